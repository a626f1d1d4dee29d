//! Key layout shared by every spool implementation (see the module doc of
//! [`crate::spool`]). Pure functions, so the RocksDB implementation and the in-memory
//! one agree byte for byte.

use crate::model::{CampaignId, DecodeError, MessageId};

/// Separates a domain or campaign from the id that follows it. Domains and campaign
/// ids never contain NUL, and NUL sorts before every other byte, so `a.com` +
/// separator is a prefix of no key of `a.com.evil`.
pub const SEP: u8 = 0;

/// Length of a recipient key's fixed tail: separator, id, recipient index.
const RCPT_TAIL: usize = 1 + 16 + 4;

/// The key of a message's body and meta records: its id, big-endian.
pub fn message_key(id: MessageId) -> [u8; 16] {
    id.to_bytes()
}

/// `domain, 0x00, id (16, BE), rcpt (u32 BE)`: one domain's recipients are a
/// contiguous range, ordered by message age.
pub fn recipient_key(domain: &str, id: MessageId, rcpt: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(domain.len() + RCPT_TAIL);
    push_recipient_key(&mut k, domain, id, rcpt);
    k
}

/// Appends [`recipient_key`] to `out`, so hot loops can reuse one buffer.
pub fn push_recipient_key(out: &mut Vec<u8>, domain: &str, id: MessageId, rcpt: u32) {
    out.extend_from_slice(domain.as_bytes());
    out.push(SEP);
    out.extend_from_slice(&id.to_bytes());
    out.extend_from_slice(&rcpt.to_be_bytes());
}

/// Splits a recipient key back into domain, id and recipient index.
pub fn parse_recipient_key(key: &[u8]) -> Result<(&str, MessageId, u32), DecodeError> {
    let split = key
        .len()
        .checked_sub(RCPT_TAIL)
        .ok_or(DecodeError::Truncated)?;
    let (domain, tail) = key.split_at(split);
    if tail[0] != SEP || domain.contains(&SEP) {
        return Err(DecodeError::BadTag {
            what: "recipient key separator",
            tag: tail[0],
        });
    }
    let domain = std::str::from_utf8(domain).map_err(|_| DecodeError::BadUtf8("domain"))?;
    let id: [u8; 16] = tail[1..17].try_into().map_err(|_| DecodeError::Truncated)?;
    let rcpt: [u8; 4] = tail[17..].try_into().map_err(|_| DecodeError::Truncated)?;
    Ok((domain, MessageId::from_bytes(id), u32::from_be_bytes(rcpt)))
}

/// The `[start, end)` range holding every recipient key of `domain`.
pub fn domain_range(domain: &str) -> (Vec<u8>, Vec<u8>) {
    prefix_range(domain.as_bytes())
}

/// `campaign, 0x00, id (16, BE)`: the campaign index, so purging a campaign walks a
/// range instead of every meta record.
pub fn campaign_key(campaign: &CampaignId, id: MessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(campaign.0.len() + 17);
    k.extend_from_slice(campaign.0.as_bytes());
    k.push(SEP);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The `[start, end)` range holding every campaign-index key of `campaign`.
pub fn campaign_range(campaign: &CampaignId) -> (Vec<u8>, Vec<u8>) {
    prefix_range(campaign.0.as_bytes())
}

/// The id at the end of a campaign-index key.
pub fn parse_campaign_key(key: &[u8]) -> Result<MessageId, DecodeError> {
    let split = key.len().checked_sub(16).ok_or(DecodeError::Truncated)?;
    let id: [u8; 16] = key[split..]
        .try_into()
        .map_err(|_| DecodeError::Truncated)?;
    Ok(MessageId::from_bytes(id))
}

/// The first `completed` key not pruned when pruning messages created before
/// `created_before`: the smallest id of that millisecond (ids lead with their
/// creation time, so every older id sorts before it).
pub fn completed_prune_end(created_before: crate::model::Timestamp) -> [u8; 16] {
    MessageId::from_parts(created_before.as_millis(), 0, 0).to_bytes()
}

fn prefix_range(name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut start = name.to_vec();
    start.push(SEP);
    let mut end = name.to_vec();
    end.push(SEP + 1);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_keys_round_trip_and_group_by_domain() {
        let (a, b) = (MessageId(5), MessageId(1 << 100));
        let k = recipient_key("a.com", b, 7);
        assert_eq!(parse_recipient_key(&k), Ok(("a.com", b, 7)));
        let (start, end) = domain_range("a.com");
        let mut keys = [
            recipient_key("a.com.evil", a, 0),
            recipient_key("a.com", b, 0),
            recipient_key("a.co", a, 0),
            recipient_key("a.com", a, 3),
            recipient_key("b.com", a, 0),
        ];
        keys.sort();
        let inside: Vec<_> = keys.iter().filter(|k| **k >= start && **k < end).collect();
        assert_eq!(
            inside,
            vec![&recipient_key("a.com", a, 3), &recipient_key("a.com", b, 0)]
        );
    }

    #[test]
    fn malformed_recipient_keys_are_errors() {
        assert!(parse_recipient_key(b"short").is_err());
        let mut k = recipient_key("x.org", MessageId(1), 1);
        let sep = k.len() - 21;
        k[sep] = b'!';
        assert!(parse_recipient_key(&k).is_err());
        let mut bad_utf8 = recipient_key("x", MessageId(1), 1);
        bad_utf8[0] = 0xff;
        assert!(parse_recipient_key(&bad_utf8).is_err());
    }

    #[test]
    fn campaign_keys_round_trip() {
        let c = CampaignId("spring".into());
        let k = campaign_key(&c, MessageId(42));
        assert_eq!(parse_campaign_key(&k), Ok(MessageId(42)));
        let (start, end) = campaign_range(&c);
        assert!(k >= start && k < end);
        assert!(campaign_key(&CampaignId("spring2".into()), MessageId(1)) >= end);
    }
}
