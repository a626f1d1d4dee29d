//! Command parsing and rendering throughput: what the load-test sink does for every
//! command a blaster pipelines, and what the egress client does to build them.
//! Every benchmark reports bytes/s over the wire form; divide by the line length
//! (printed by criterion as the throughput input) for commands/s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use volley::smtp::address::{Mailbox, Path};
use volley::smtp::command::{
    next_line, BodyType, Command, DsnNotify, Line, MailFrom, OriginalRecipient, RcptTo,
};
use volley::smtp::limits::MAX_COMMAND_LINE_WITH_PARAMS;

const MAIL: &[u8] =
    b"MAIL FROM:<bounces+1f3a9c@mailer.example.com> SIZE=48213 BODY=8BITMIME RET=HDRS \
      ENVID=QQ314159\r\n";
const RCPT: &[u8] =
    b"RCPT TO:<Jane.Doe@customer.example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;Jane.Doe@customer.example.org\r\n";

/// Frames and parses every command in `wire`, returning how many there were.
fn parse_all(wire: &[u8]) -> usize {
    let mut at = 0;
    let mut count = 0;
    while let Line::Complete(n) = next_line(&wire[at..], MAX_COMMAND_LINE_WITH_PARAMS) {
        let cmd = Command::parse(&wire[at..at + n]).expect("benchmark input must parse");
        black_box(&cmd);
        at += n;
        count += 1;
    }
    assert_eq!(at, wire.len(), "benchmark input must be whole lines");
    count
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("command_parse");
    for (name, line) in [
        ("mail_from_with_params", MAIL),
        ("rcpt_to_with_params", RCPT),
    ] {
        assert!(Command::parse(line).is_ok());
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(name, |b| b.iter(|| Command::parse(black_box(line))));
    }

    // What the sink sees from a pipelining blaster: per message MAIL, 3 RCPT, DATA.
    let mut burst = Vec::new();
    for _ in 0..20 {
        burst.extend_from_slice(MAIL);
        for _ in 0..3 {
            burst.extend_from_slice(RCPT);
        }
        burst.extend_from_slice(b"DATA\r\n");
    }
    assert_eq!(parse_all(&burst), 100);
    group.throughput(Throughput::Bytes(burst.len() as u64));
    group.bench_function("frame_and_parse_pipelined_100", |b| {
        b.iter(|| parse_all(black_box(&burst)))
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let mut mail = MailFrom::new(Path::mailbox(
        Mailbox::parse("bounces+1f3a9c@mailer.example.com", false).expect("valid sender"),
    ));
    mail.size = Some(48_213);
    mail.body = Some(BodyType::EightBitMime);
    mail.envid = Some("QQ314159".into());
    let mut rcpt = RcptTo::new(Path::mailbox(
        Mailbox::parse("Jane.Doe@customer.example.org", false).expect("valid recipient"),
    ));
    rcpt.notify = Some(DsnNotify {
        failure: true,
        delay: true,
        ..DsnNotify::default()
    });
    rcpt.orcpt = Some(OriginalRecipient {
        addr_type: "rfc822".into(),
        address: "Jane.Doe@customer.example.org".into(),
    });
    let commands = [Command::Mail(mail), Command::Rcpt(rcpt)];

    let mut out = Vec::with_capacity(512);
    for cmd in &commands {
        cmd.write_to(&mut out);
    }
    let mut group = c.benchmark_group("command_render");
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("mail_and_rcpt", |b| {
        b.iter(|| {
            out.clear();
            for cmd in black_box(&commands) {
                cmd.write_to(&mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, parse, render);
criterion_main!(benches);
