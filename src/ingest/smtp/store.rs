//! From a finished SMTP transaction to a durable spool record: the `Received:`
//! header, the meta record (envelope with the client's DSN, BODY and SMTPUTF8
//! parameters, tenant, tags), then [`EngineHandle::inject_message`].

use std::collections::HashSet;
use std::sync::Arc;

use crate::delivery::EngineHandle;
use crate::model::{DsnRequest, Envelope, MessageId, MessageMeta, Recipient, TenantId, Timestamp};
use crate::smtp::server::{StoreOutcome, Transaction};
use crate::spool::NewMessage;

/// Stores `t` and says how to answer the client. The reply is positive only once
/// the spool's write is durable.
pub async fn store(
    engine: &EngineHandle,
    hostname: &str,
    listener: &'static str,
    t: Transaction,
) -> StoreOutcome {
    let (id, created, expires) = engine.new_message_id();
    let msg = new_message(&t, hostname, listener, id, created, expires);
    drop(t);
    match engine.inject_message(msg).await {
        Ok(id) => StoreOutcome::Queued(id.to_string()),
        Err(e) if e.is_transient() => StoreOutcome::TryLater,
        Err(_) => StoreOutcome::Refused,
    }
}

/// The spool record for `t`: the body with our `Received:` line in front.
pub fn new_message(
    t: &Transaction,
    hostname: &str,
    listener: &'static str,
    id: MessageId,
    created: Timestamp,
    expires: Timestamp,
) -> NewMessage {
    let received = t.received_header(hostname, &id.to_string(), created.as_secs());
    let mut body = Vec::with_capacity(received.len() + t.body.len());
    body.extend_from_slice(received.as_bytes());
    body.extend_from_slice(&t.body);
    // A recipient given twice is delivered once.
    let mut seen = HashSet::new();
    let recipients = t
        .rcpts
        .iter()
        .filter_map(|r| {
            let mailbox = r.path.mailbox.as_ref()?;
            let address = mailbox.to_string();
            seen.insert(address.clone()).then(|| Recipient {
                domain: mailbox.domain.to_string().to_ascii_lowercase(),
                address,
                notify: r.notify.unwrap_or_default(),
                orcpt: r.orcpt.clone(),
            })
        })
        .collect();
    let mut tags = vec![
        ("source".to_string(), "smtp".to_string()),
        ("listener".to_string(), listener.to_string()),
    ];
    if let Some(identity) = &t.identity {
        tags.push(("smtp_user".to_string(), identity.username.clone()));
    }
    let meta = MessageMeta {
        id,
        tenant: t.tenant.clone().map(TenantId),
        campaign: None,
        created,
        expires,
        envelope: Envelope {
            reverse_path: t
                .mail
                .path
                .mailbox
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            recipients,
            body_type: t.body_type(),
            smtputf8: t.mail.smtputf8,
            dsn: DsnRequest {
                ret: t.mail.ret,
                envid: t.mail.envid.clone(),
            },
        },
        body_len: body.len() as u64,
        tags,
    };
    NewMessage {
        meta,
        body: Arc::from(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::{Command, DsnReturn};
    use crate::smtp::server::{Identity, TlsInfo};

    fn mail(line: &str) -> crate::smtp::command::MailFrom {
        match Command::parse(line.as_bytes()).unwrap() {
            Command::Mail(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn rcpt(line: &str) -> crate::smtp::command::RcptTo {
        match Command::parse(line.as_bytes()).unwrap() {
            Command::Rcpt(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn meta_keeps_the_clients_parameters() {
        let t = Transaction {
            mail: mail("MAIL FROM:<bounce@Sender.Test> BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef"),
            rcpts: vec![
                rcpt("RCPT TO:<One@Far.Example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;one@far.example"),
                rcpt("RCPT TO:<two@[192.0.2.1]>"),
                rcpt("RCPT TO:<One@far.example>"),
            ],
            body: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            helo: "client.test".into(),
            ehlo: true,
            peer: "127.0.0.1".parse().unwrap(),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_128_GCM_SHA256".into(),
            }),
            identity: Some(Identity {
                username: "alice".into(),
                tenant: Some("acme".into()),
            }),
            tenant: Some("acme".into()),
        };
        let id = MessageId(0x1234);
        let msg = new_message(
            &t,
            "mx.test",
            "submission",
            id,
            Timestamp::from_secs(1_700_000_000),
            Timestamp::from_secs(1_700_086_400),
        );
        let m = &msg.meta;
        m.validate().unwrap();
        assert_eq!(m.id, id);
        assert_eq!(m.tenant, Some(TenantId("acme".into())));
        assert_eq!(m.envelope.reverse_path, "bounce@sender.test");
        let r = &m.envelope.recipients;
        assert_eq!(r.len(), 2, "duplicate recipient stored once");
        assert_eq!(r[0].address, "One@far.example");
        assert_eq!(r[0].domain, "far.example");
        assert!(r[0].notify.failure && r[0].notify.delay && !r[0].notify.success);
        assert_eq!(r[0].orcpt.as_ref().unwrap().address, "one@far.example");
        assert_eq!(r[1].domain, "[192.0.2.1]");
        assert_eq!(m.envelope.dsn.ret, Some(DsnReturn::Headers));
        assert_eq!(m.envelope.dsn.envid.as_deref(), Some("abc+def"));
        assert!(m.tags.contains(&("source".into(), "smtp".into())));
        assert!(m.tags.contains(&("smtp_user".into(), "alice".into())));
        let body = String::from_utf8(msg.body.to_vec()).unwrap();
        assert!(body.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Volley) with ESMTPSA\r\n"), "{body}");
        assert!(
            body.contains(&format!("\tid {id}; Tue, 14 Nov 2023 22:13:20 +0000\r\n")),
            "{body}"
        );
        assert!(body.ends_with("\r\nSubject: x\r\n\r\nhi\r\n"));
        assert_eq!(m.body_len, msg.body.len() as u64);
    }
}
