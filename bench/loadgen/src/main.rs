//! Open-loop load generator for `make bench`, in the manner of wrk2.
//!
//! `--connections` keep-alive HTTP/1.1 connections, one thread each, together send POSTs at
//! `--rate` per second: connection k sends requests k, k+N, k+2N, ... of one global schedule.
//! Each response's time to first byte and to last byte is measured from the moment its request
//! was *due*, not from when it went out, so a slow response that delays the requests behind it
//! is charged to those requests too (no coordinated omission).
//!
//! Prints one JSON summary (microseconds) and, with `--raw FILE`, appends one line per measured
//! response (`first_byte_us last_byte_us due_us`, the last from the start of the schedule) so that
//! runs split into slices can be pooled.
//!
//! `--url` given T times loads T servers at once, each at `--rate` over its own `--connections`,
//! their requests interleaved in one schedule (A, B, A, B, ...): a stall of the machine delays
//! requests of every server alike, so their latencies can be compared request by request. Raw
//! lines then carry a fourth column, the server's index, and the summary one entry per server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Target {
    host_port: String,
    request: Vec<u8>,
}

struct Args {
    targets: Vec<Target>,
    rate: f64,
    connections: u32,
    duration: Duration,
    warmup: Duration,
    raw: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut urls = Vec::new();
    let mut body = None;
    let mut headers = Vec::new();
    let mut rate: f64 = 200.0;
    let mut connections = 1u32;
    let mut duration = 5.0;
    let mut warmup = 1.0;
    let mut raw = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => urls.push(value()?),
            "--body" => {
                let path = value()?;
                body = Some(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?);
            }
            "--header" => headers.push(value()?),
            "--rate" => rate = value()?.parse().map_err(|_| "--rate: not a number")?,
            "--connections" => {
                connections = value()?
                    .parse()
                    .map_err(|_| "--connections: not a number")?
            }
            "--duration" => duration = value()?.parse().map_err(|_| "--duration: not a number")?,
            "--warmup" => warmup = value()?.parse().map_err(|_| "--warmup: not a number")?,
            "--raw" => raw = Some(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if urls.is_empty() {
        return Err("--url is required".into());
    }
    if rate.is_nan() || rate <= 0.0 || connections == 0 {
        return Err("--rate and --connections must be positive".into());
    }
    let body = body.ok_or("--body is required")?;
    let targets = urls
        .iter()
        .map(|url| target(url, &body, &headers))
        .collect::<Result<_, _>>()?;
    Ok(Args {
        targets,
        rate,
        connections,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        raw,
    })
}

/// One server's request: its `host:port` and the bytes of the POST.
fn target(url: &str, body: &[u8], headers: &[String]) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host_port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    Ok(Target { host_port, request })
}

struct Response {
    status: u16,
    first_byte: Instant,
    /// The server said `connection: close`: the next request needs a new connection.
    close: bool,
}

/// Reads one response.
fn read_response(conn: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    // fill_buf blocks until the first byte of the response is here.
    conn.fill_buf()?;
    let first_byte = Instant::now();
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut content_length = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                content_length = v.trim().parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "connection" && v.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let mut skip = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            skip.resize(size + 2, 0);
            conn.read_exact(&mut skip)?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = content_length {
        skip.resize(n, 0);
        conn.read_exact(&mut skip)?;
    }
    Ok(Response {
        status,
        first_byte,
        close,
    })
}

fn connect(host_port: &str) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(host_port)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(BufReader::with_capacity(64 * 1024, s))
}

/// Sleeps until `t`, spinning only for the last 50 µs: sleep alone overshoots by tens of µs, and
/// spinning longer would take CPU from the servers under test on a small machine.
fn wait_until(t: Instant) {
    let spin = Duration::from_micros(50);
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[derive(Default)]
struct Outcome {
    /// (first byte, last byte), each from the moment the request was due.
    samples: Vec<(Duration, Duration, Duration)>,
    errors: u64,
}

/// One connection's share of server `t`'s schedule: its requests `k`, `k + n`, `k + 2n`, ...,
/// each at its place in the interleaved schedule of all T servers (request i of server t is the
/// schedule's request i * T + t).
fn connection(
    a: Arc<Args>,
    t: usize,
    k: u32,
    begin: Instant,
    measure_from: Instant,
    end: Instant,
) -> Result<Outcome, String> {
    let target = a.targets.get(t).ok_or("no such target")?;
    let host_port = &target.host_port;
    let mut conn = connect(host_port).map_err(|e| format!("connect {host_port}: {e}"))?;
    let servers = a.targets.len() as u32;
    let interval = Duration::from_secs_f64(1.0 / (a.rate * f64::from(servers)));
    let mut out = Outcome::default();
    let mut i = k;
    loop {
        let due = begin + interval * (i * servers + t as u32);
        i += a.connections;
        if due >= end {
            return Ok(out);
        }
        wait_until(due);
        let result = conn
            .get_mut()
            .write_all(&target.request)
            .and_then(|()| read_response(&mut conn));
        let measured = due >= measure_from;
        let reconnect = match result {
            Ok(r) => {
                if r.status != 200 {
                    out.errors += u64::from(measured);
                } else if measured {
                    out.samples
                        .push((r.first_byte - due, due.elapsed(), due - begin));
                }
                r.close
            }
            Err(_) => {
                out.errors += u64::from(measured);
                true
            }
        };
        if reconnect {
            conn = connect(host_port).map_err(|e| format!("reconnect {host_port}: {e}"))?;
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted
        .get(rank - 1)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn run(a: Args) -> Result<String, String> {
    let a = Arc::new(a);
    // Connections open before the clock starts, so the first requests do not pay for them.
    let begin = Instant::now() + Duration::from_millis(20);
    let measure_from = begin + a.warmup;
    let end = measure_from + a.duration;
    let threads: Vec<_> = (0..a.targets.len())
        .flat_map(|t| (0..a.connections).map(move |k| (t, k)))
        .map(|(t, k)| {
            let a = Arc::clone(&a);
            let h = std::thread::spawn(move || connection(a, t, k, begin, measure_from, end));
            (t, h)
        })
        .collect();
    let mut each: Vec<Outcome> = a.targets.iter().map(|_| Outcome::default()).collect();
    for (t, h) in threads {
        let o = h.join().map_err(|_| "a connection thread panicked")??;
        if let Some(all) = each.get_mut(t) {
            all.samples.extend(o.samples);
            all.errors += o.errors;
        }
    }
    let several = each.len() > 1;
    if let Some(path) = &a.raw {
        let mut lines = String::new();
        for (t, all) in each.iter().enumerate() {
            for (first, last, at) in &all.samples {
                lines.push_str(&format!(
                    "{} {} {}",
                    first.as_micros(),
                    last.as_micros(),
                    at.as_micros()
                ));
                if several {
                    lines.push_str(&format!(" {t}"));
                }
                lines.push('\n');
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))?;
        f.write_all(lines.as_bytes())
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let summaries: Vec<String> = each.iter().map(|o| summary(o, &a)).collect();
    Ok(if several {
        format!("{{\"targets\":[{}]}}", summaries.join(","))
    } else {
        summaries.concat()
    })
}

/// One server's JSON summary.
fn summary(all: &Outcome, a: &Args) -> String {
    let mut first: Vec<Duration> = all.samples.iter().map(|s| s.0).collect();
    let mut last: Vec<Duration> = all.samples.iter().map(|s| s.1).collect();
    first.sort();
    last.sort();
    let stats = |v: &[Duration]| {
        format!(
            "{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"max\":{:.1}}}",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            percentile(v, 1.0)
        )
    };
    format!(
        "{{\"requests\":{},\"errors\":{},\"rate\":{},\"connections\":{},\"first_byte_us\":{},\"last_byte_us\":{}}}",
        all.samples.len(),
        all.errors,
        a.rate,
        a.connections,
        stats(&first),
        stats(&last)
    )
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
