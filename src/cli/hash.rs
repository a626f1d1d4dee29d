//! `volley hash-token` and `volley hash-password`: credentials in the form the
//! configuration file keeps them (never the secret itself).

use std::io::Read;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{hex, CliError};

/// Prefix of generated API tokens, so a leaked one is recognisable in logs.
const TOKEN_PREFIX: &str = "vly_";

/// A new random API token (256 bits) and the SHA-256 hex that `[[tenant]]
/// api_tokens` holds.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&token);
    (token, hash)
}

/// Lowercase hex SHA-256 of a token, as the HTTP API compares it.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// `volley hash-token`: prints the token, its hash and where each goes.
pub fn hash_token() -> Result<(), CliError> {
    let (token, hash) = new_token();
    println!("token:  {token}");
    println!("sha256: {hash}");
    println!();
    println!("Put the hash in the configuration:  [[tenant]] api_tokens = [\"{hash}\"]");
    println!("Give the token to the client:       Authorization: Bearer {token}");
    println!("                                    (volley send --token, or VOLLEY_TOKEN)");
    Ok(())
}

/// An argon2id PHC string for `password` with a fresh random salt.
pub fn password_hash(password: &str) -> Result<String, CliError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| CliError::runtime(format!("making a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CliError::runtime(format!("hashing the password: {e}")))
}

/// `volley hash-password`: reads one password from stdin (the first line; a
/// trailing newline is not part of it) and prints its argon2id PHC string.
pub fn hash_password() -> Result<(), CliError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| CliError::usage(format!("reading the password from stdin: {e}")))?;
    let password = input.lines().next().unwrap_or("");
    if password.is_empty() {
        return Err(CliError::usage(
            "no password on stdin (e.g. `read -rs PW && printf '%s\\n' \"$PW\" | volley hash-password`)",
        ));
    }
    let hash = password_hash(password)?;
    println!("{hash}");
    eprintln!("volley: put it in [smtp.submission] users = [{{ username = \"...\", password_hash = \"{hash}\" }}]");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    #[test]
    fn tokens_are_random_and_hash_as_the_api_expects() {
        let (t1, h1) = new_token();
        let (t2, _) = new_token();
        assert_ne!(t1, t2);
        assert!(t1.starts_with(TOKEN_PREFIX) && t1.len() > 40, "{t1}");
        assert_eq!(h1.len(), 64);
        assert_eq!(
            token_hash("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn password_hashes_are_argon2id_and_verify() {
        let h = password_hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
    }
}
