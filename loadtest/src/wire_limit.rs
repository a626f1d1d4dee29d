//! `volley-load wire-limit`: the load-test kit in one command. Starts a sink on
//! loopback, blasts a few standard workloads at it (the "wire limit" figures the
//! transmitter is measured against) and prints a table. (It was `volley-load demo`;
//! the one demo is now `volley demo`, the transmitter end to end.)
//!
//! The sink and the blaster run as child processes of this same binary, driven
//! through their command lines, so it exercises exactly what users run.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

/// Command-line arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Messages per workload (each workload also stops after --duration).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Upper bound on each workload's run time, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Connections the blaster opens.
    #[arg(long, default_value_t = 20)]
    pub connections: u32,
    /// Print one JSON object per workload instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One standard workload.
struct Workload {
    name: &'static str,
    size: u32,
    rcpts: u32,
    chunking: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "4 KB x 1 rcpt, PIPELINING+DATA",
        size: 4096,
        rcpts: 1,
        chunking: false,
    },
    Workload {
        name: "4 KB x 1 rcpt, PIPELINING+BDAT",
        size: 4096,
        rcpts: 1,
        chunking: true,
    },
    Workload {
        name: "4 KB x 50 rcpts, PIPELINING+BDAT",
        size: 4096,
        rcpts: 50,
        chunking: true,
    },
    Workload {
        name: "100 KB x 1 rcpt, PIPELINING+BDAT",
        size: 102_400,
        rcpts: 1,
        chunking: true,
    },
];

/// Runs the workloads and prints the table.
pub fn run(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating volley-load")?;
    let addr = free_port("127.0.0.2")?;
    let mut sink = start_sink(&exe, addr)?;
    if !args.json {
        println!(
            "volley-load wire-limit: sink on {addr}, {} connections\n",
            args.connections
        );
        println!(
            "{:<36} {:>10} {:>11} {:>9} {:>9} {:>9}",
            "workload", "msgs/s", "rcpts/s", "MB/s", "p50 ms", "p99 ms"
        );
    }
    let result = run_workloads(&exe, addr, &args);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(sink.id().to_string())
        .status();
    let mut summary = String::new();
    if let Some(mut out) = sink.stdout.take() {
        let _ = out.read_to_string(&mut summary);
    }
    let _ = sink.wait();
    result?;
    if !args.json {
        println!("\nsink summary: {}", summary.trim());
        println!(
            "\nThese are the wire-limit figures: what one client and one sink sharing this \
             machine can push over loopback. See loadtest/README.md for the comparisons \
             with Postfix's smtp-sink and smtp-source (loadtest/compare.sh)."
        );
    }
    Ok(())
}

fn run_workloads(exe: &std::path::Path, addr: SocketAddr, args: &Args) -> anyhow::Result<()> {
    for w in WORKLOADS {
        let mut cmd = Command::new(exe);
        cmd.arg("blast")
            .arg("--target")
            .arg(addr.to_string())
            .args(["--json", "--quiet"])
            .args(["--messages", &args.messages.to_string()])
            .args(["--duration", &args.duration.to_string()])
            .args(["--connections", &args.connections.to_string()])
            .args(["--size", &w.size.to_string()])
            .args(["--rcpts-per-msg", &w.rcpts.to_string()])
            .args(["--domains", "100"]);
        if w.chunking {
            cmd.arg("--chunking");
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .context("running the blaster")?;
        if !out.status.success() {
            bail!("blaster failed for {:?}: {}", w.name, out.status);
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("blaster report for {:?}", w.name))?;
        if args.json {
            let mut obj = report.clone();
            obj["workload"] = w.name.into();
            println!("{obj}");
            continue;
        }
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        let msgs = f(&report["msgs_per_s"]);
        println!(
            "{:<36} {:>10.0} {:>11.0} {:>9.1} {:>9.2} {:>9.2}",
            w.name,
            msgs,
            f(&report["rcpts_per_s"]),
            msgs * f64::from(w.size) / 1e6,
            f(&report["latency_ms"]["p50"]),
            f(&report["latency_ms"]["p99"]),
        );
    }
    Ok(())
}

fn free_port(ip: &str) -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(l.local_addr()?)
}

fn start_sink(exe: &std::path::Path, addr: SocketAddr) -> anyhow::Result<Child> {
    let mut child = Command::new(exe)
        .args(["sink", "--quiet", "--listen", &addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the sink")?;
    let stderr = child.stderr.take().context("sink stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            } else {
                eprintln!("[sink] {line}");
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        let _ = child.kill();
        bail!("the sink did not start listening on {addr}");
    }
    Ok(child)
}
