//! The load benchmark: every path of the layer over real sockets, as ratios to a bare axum
//! router measured in the same run.
//!
//! ```sh
//! cargo run --release --example loadbench -- --write   # the table and chart in docs/
//! ```
//!
//! Each path runs in its own server process pinned to core 0 (`taskset`), one current-thread
//! Tokio runtime, while `wrk` (one thread, 64 keep-alive connections) loads it from core 1, so
//! the server's one core is what is measured. Paths: the bare router; a free route through the
//! layer; a 402 on each store; the paid path (402 then the paid retry, in-process verifier) on
//! each store. Redis and PostgreSQL run when `REDIS_URL` / `DATABASE_URL` are set (their servers
//! are not pinned: they share the machine with both sides).
//!
//! Flags: `--seconds N` per path (default 5), `--rounds N` (3), `--connections N` (64),
//! `--stores memory,file,…`,
//! `--write` (replace the generated section of `docs/performance.md` and `docs/loadbench.svg`).
//! Needs `wrk` (`apt-get install wrk`). The paid path's proofs name random block hashes that the
//! in-process verifier accepts: the node is not what this measures.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use nanosession::nano::Raw;
use nanosession::store::{
    FileStore, MemorySessionStore, MemorySpentSet, PostgresOptions, PostgresStore, RedisOptions, RedisStore,
    Stores,
};
use nanosession::PaymentRequiredLayer;

#[path = "support/accept_all.rs"]
mod accept_all;
use accept_all::AcceptAll;

/// Room for every session a run creates: the default bounds (100 k) would fill in seconds.
const CAPACITY: u64 = 5_000_000;

async fn stores(store: &str, run: &str) -> Stores {
    // Each run gets its own keys or tables, so no run sees another's sessions or bound.
    match store {
        "memory" => Stores {
            sessions: Arc::new(MemorySessionStore::with_capacity(CAPACITY as usize)),
            spent: Arc::new(MemorySpentSet::with_capacity(CAPACITY as usize)),
            persistent: false,
        },
        "file" => {
            let path = std::env::temp_dir().join(format!("nanosession-loadbench-{run}.redb"));
            Stores::shared(FileStore::open_with_capacity(&path, CAPACITY).await.expect("file store"), true)
        }
        "redis" => {
            let url = std::env::var("REDIS_URL").expect("REDIS_URL");
            let options =
                RedisOptions { prefix: format!("nsbench:{run}:"), capacity: CAPACITY, ..Default::default() };
            Stores::shared(RedisStore::connect_with(&url, options).await.expect("redis store"), true)
        }
        "postgres" => {
            let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
            let options = PostgresOptions {
                table_prefix: format!("nsbench_{run}_"),
                capacity: CAPACITY,
                ..Default::default()
            };
            Stores::shared(PostgresStore::connect_with(&url, options).await.expect("postgres store"), true)
        }
        other => panic!("unknown store {other}"),
    }
}

/// The server half: `loadbench serve PORT bare|layer STORE RUN`.
fn serve(args: &[String]) {
    let [port, kind, store, run] = args else { panic!("serve PORT bare|layer STORE RUN") };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let app = Router::new().route("/free", get(|| async { "ok" })).route("/paid", get(|| async { "ok" }));
        let app = if kind == "bare" {
            app
        } else {
            let layer = PaymentRequiredLayer::builder()
                .pay_to("nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap())
                .price_table([("/paid", Raw::new(1_000_000_000))])
                .unlisted_paths(nanosession::layer::Unlisted::Free)
                .public_base_url("http://127.0.0.1")
                .stores(stores(store, run).await)
                .verifier(AcceptAll)
                .build()
                .expect("layer")
                .json_body();
            app.layer(layer)
        };
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

/// One measured path.
struct Path {
    label: String,
    kind: &'static str,
    store: &'static str,
    route: &'static str,
    paid: bool,
    /// The issue's target, as a ratio to its baseline.
    target: Option<f64>,
}

/// The medians of a path's rounds.
struct Measured {
    /// Requests per second (for the paid path: grants per second, each a 402 plus a retry).
    rate: f64,
    /// The rate over its baseline in the same round: bare, or half of bare for a 402 + retry.
    ratio: f64,
    /// The lowest and highest ratio of the rounds.
    range: (f64, f64),
    p50_ms: f64,
    p99_ms: f64,
}

impl Measured {
    fn of(samples: &[[f64; 4]]) -> Measured {
        let median = |i: usize| {
            let mut v: Vec<f64> = samples.iter().map(|s| s[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ratios = samples.iter().map(|s| s[1]);
        let range = (ratios.clone().fold(f64::INFINITY, f64::min), ratios.fold(0.0, f64::max));
        Measured { rate: median(0), ratio: median(1), range, p50_ms: median(2), p99_ms: median(3) }
    }
}

const PLAIN_LUA: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format("NSBENCH %d %d %d %d %d %d\n", summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// The paid path: each 402's session is answered by one paid retry naming a fresh block.
const PAID_LUA: &str = r#"
local threads = {}
function setup(thread) thread:set("id", #threads + 1); table.insert(threads, thread) end
function init(args) prefix = args[1]; queue = {}; head = 1; tail = 0; counter = 0; ok = 0; other = 0 end
function request()
  if head <= tail then
    local s = queue[head]; queue[head] = nil; head = head + 1; counter = counter + 1
    return wrk.format("GET", "/paid", {["X-Payment-Session"] = s,
      ["X-Payment-Block"] = string.format("%s%08X%040X", prefix, id, counter)})
  end
  return wrk.format("GET", "/paid")
end
function response(status, headers, body)
  if status == 402 and headers["x-payment-session"] then
    tail = tail + 1; queue[tail] = headers["x-payment-session"]
  elseif status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local granted, wrong = 0, 0
  for _, t in ipairs(threads) do granted = granted + t:get("ok"); wrong = wrong + t:get("other") end
  io.write(string.format("NSBENCH %d %d %d %d %d %d\n", summary.requests, summary.duration, granted, wrong,
    latency:percentile(50), latency:percentile(99)))
end
"#;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn pinned(core: &str, program: &str) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", core, program]);
    command
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(path: &Path, run: &str) -> (Server, u16) {
    let port = free_port();
    let exe = std::env::current_exe().unwrap();
    let child = pinned("0", exe.to_str().unwrap())
        .args(["serve", &port.to_string(), path.kind, path.store, run])
        .stdout(Stdio::null())
        .spawn()
        .expect("server");
    let server = Server(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the {} server did not start", path.label);
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, port)
}

fn wrk(port: u16, path: &Path, seconds: u64, connections: u32, run: &str) -> [f64; 6] {
    let script = std::env::temp_dir().join(format!("nanosession-loadbench-{run}.lua"));
    std::fs::write(&script, if path.paid { PAID_LUA } else { PLAIN_LUA }).unwrap();
    let prefix = format!("{:016X}", rand::random::<u64>());
    let output = pinned("1", "wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}{}", path.route))
        .args(["--", &prefix])
        .output()
        .expect("wrk (apt-get install wrk)");
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("NSBENCH ")).unwrap_or_else(|| {
        panic!(
            "wrk printed no result for {}:\n{stdout}\n{}",
            path.label,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let v: Vec<f64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3], v[4], v[5]]
}

fn measure(path: &Path, seconds: u64, connections: u32) -> (f64, f64, f64, u64) {
    let run = format!("{}{}", std::process::id(), rand::random::<u32>());
    let (server, port) = start(path, &run);
    // Warm up (connections, allocator, the store's first writes), then measure.
    wrk(port, path, 1, connections, &run);
    let [requests, micros, third, fourth, p50, p99] = wrk(port, path, seconds, connections, &run);
    drop(server);
    clean_up(path.store, &run);
    let secs = micros / 1e6;
    let (rate, wrong) = if path.paid {
        // third = grants, fourth = anything but a 402 or a 200
        (third / secs, fourth as u64)
    } else if path.route == "/paid" {
        // every answer must be a 402 (wrk counts non-2xx as status errors)
        (requests / secs, (requests - third) as u64 + fourth as u64)
    } else {
        (requests / secs, third as u64 + fourth as u64)
    };
    (rate, p50 / 1000.0, p99 / 1000.0, wrong)
}

/// Removes what a run left in its store (file, Redis keys, PostgreSQL tables): a benchmark
/// leaves millions of sessions behind, which slows every later `KEYS` or scan of that server.
fn clean_up(store: &str, run: &str) {
    let _ = std::fs::remove_file(std::env::temp_dir().join(format!("nanosession-loadbench-{run}.redb")));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        match store {
            "redis" => {
                let client = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
                let mut cursor = 0u64;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("*nsbench:{run}:*"))
                        .arg("COUNT")
                        .arg(10_000)
                        .query_async(&mut conn)
                        .await
                        .expect("SCAN");
                    if !keys.is_empty() {
                        let _: () =
                            redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await.expect("UNLINK");
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            "postgres" => {
                let url = std::env::var("DATABASE_URL").unwrap();
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("postgres");
                tokio::spawn(connection);
                let pattern = format!("nsbench\\_{run}\\_%");
                let rows = client
                    .query("SELECT tablename FROM pg_tables WHERE tablename LIKE $1", &[&pattern])
                    .await
                    .expect("pg_tables");
                for row in rows {
                    let table: String = row.get(0);
                    client
                        .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\" CASCADE"))
                        .await
                        .expect("DROP");
                }
            }
            _ => {}
        }
    });
}

struct Options {
    seconds: u64,
    connections: u32,
    rounds: u32,
    stores: Vec<&'static str>,
    write: bool,
}

fn options() -> Result<Options, String> {
    let mut o =
        Options { seconds: 5, connections: 64, rounds: 3, stores: vec!["memory", "file"], write: false };
    if std::env::var("REDIS_URL").is_ok() {
        o.stores.push("redis");
    }
    if std::env::var("DATABASE_URL").is_ok() {
        o.stores.push("postgres");
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|_| "--seconds: a whole number")?,
            "--rounds" => {
                o.rounds = value()?.parse().ok().filter(|r| *r > 0).ok_or("--rounds: at least 1")?
            }
            "--connections" => {
                o.connections = value()?.parse().map_err(|_| "--connections: a whole number")?
            }
            "--stores" => {
                o.stores = value()?
                    .split(',')
                    .map(|s| match s {
                        "memory" => Ok("memory"),
                        "file" => Ok("file"),
                        "redis" => Ok("redis"),
                        "postgres" => Ok("postgres"),
                        other => Err(format!("--stores: unknown store {other:?}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--write" => o.write = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn paths(stores: &[&'static str]) -> Vec<Path> {
    let mut paths = vec![
        Path {
            label: "bare axum router".into(),
            kind: "bare",
            store: "memory",
            route: "/free",
            paid: false,
            target: None,
        },
        Path {
            label: "free route through the layer".into(),
            kind: "layer",
            store: "memory",
            route: "/free",
            paid: false,
            target: Some(0.98),
        },
    ];
    for &store in stores {
        let target = match store {
            "memory" => 0.5,
            "file" => 0.25,
            "redis" => 0.3,
            _ => 0.15,
        };
        paths.push(Path {
            label: format!("402, {store} store"),
            kind: "layer",
            store,
            route: "/paid",
            paid: false,
            target: Some(target),
        });
    }
    for &store in stores {
        paths.push(Path {
            label: format!("paid (402 + retry), {store} store"),
            kind: "layer",
            store,
            route: "/paid",
            paid: true,
            target: None,
        });
    }
    paths
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(&args[2..]);
        return ExitCode::SUCCESS;
    }
    if args.get(1).map(String::as_str) == Some("--memory") {
        memory_per_session();
        return ExitCode::SUCCESS;
    }
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let paths = paths(&options.stores);
    // Every round measures bare first and each path against that bare: the machine's speed
    // drifts between runs, and the median of the rounds' ratios resists it.
    let mut samples: Vec<Vec<[f64; 4]>> = vec![Vec::new(); paths.len()];
    let mut wrong = 0;
    for round in 1..=options.rounds {
        let mut bare = 0.0;
        for (i, path) in paths.iter().enumerate() {
            let (rate, p50_ms, p99_ms, w) = measure(path, options.seconds, options.connections);
            wrong += w;
            if path.kind == "bare" {
                bare = rate;
            }
            let ratio = if path.paid { rate / (bare / 2.0) } else { rate / bare };
            eprintln!(
                "round {round}: {:<36} {rate:>8.0}/s {ratio:>6.3} x  p50 {p50_ms:.2} ms  p99 {p99_ms:.2} ms  wrong {w}",
                path.label
            );
            samples[i].push([rate, ratio, p50_ms, p99_ms]);
        }
    }
    let results: Vec<Measured> = samples.iter().map(|s| Measured::of(s)).collect();
    let paid_memory =
        paths.iter().zip(&results).find(|(p, _)| p.paid && p.store == "memory").map(|(_, m)| m.rate);
    let table = table(&paths, &results, paid_memory, &options);
    println!("{table}");
    if options.write {
        write_docs(&table, &chart(&paths, &results));
    }
    if wrong > 0 {
        eprintln!("error: {wrong} answers were not what their path must answer");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn table(paths: &[Path], results: &[Measured], paid_memory: Option<f64>, o: &Options) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name\t: ").map(str::to_owned)))
        .unwrap_or_else(|| "unknown CPU".into());
    let mut out = format!(
        "`cargo run --release --example loadbench -- --write` ({} rounds; in each, every path runs {} s \
         after 1 s of warm-up and is divided by that round's bare rate; medians, with the rounds' lowest \
         and highest ratio; wrk with {} keep-alive connections on core 1, the server on core 0 with one \
         current-thread runtime; {cpu}):\n\n| path | rate | ratio (range) | target | p50 | p99 |\n\
         |---|---|---|---|---|---|\n",
        o.rounds, o.seconds, o.connections
    );
    for (path, m) in paths.iter().zip(results) {
        let baseline = if path.paid { "x (bare / 2)" } else { "x bare" };
        let target = match (path.target, path.paid) {
            (Some(t), _) => format!(">= {t}"),
            (None, true) if path.store == "file" => match paid_memory {
                Some(memory) => format!("{:.2} x memory's (>= 0.5)", m.rate / memory),
                None => String::new(),
            },
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} | {:.0}/s | {:.3} {baseline} ({:.3}–{:.3}) | {target} | {:.2} ms | {:.2} ms |\n",
            path.label, m.rate, m.ratio, m.range.0, m.range.1, m.p50_ms, m.p99_ms
        ));
    }
    out
}

/// A bar per path: its ratio to the baseline, with the target as a mark.
fn chart(paths: &[Path], results: &[Measured]) -> String {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 60 + 36 * paths.len() as u32)).into_drawing_area();
        root.fill(&WHITE).unwrap();
        let max = results.iter().map(|m| m.ratio).fold(1.0_f64, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "nanosession: throughput as a ratio to a bare axum router (one core)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(260)
            .build_cartesian_2d(0.0..max, 0..paths.len())
            .unwrap();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(paths.len())
            .y_label_formatter(&|i| paths.get(*i).map(|p| p.label.clone()).unwrap_or_default())
            .x_desc("ratio (paid path: to half of bare, one 402 + one retry per grant)")
            .draw()
            .unwrap();
        chart
            .draw_series(
                results
                    .iter()
                    .enumerate()
                    .map(|(i, m)| Rectangle::new([(0.0, i), (m.ratio, i + 1)], BLUE.mix(0.6).filled())),
            )
            .unwrap();
        chart
            .draw_series(paths.iter().enumerate().filter_map(|(i, p)| {
                p.target.map(|t| PathElement::new(vec![(t, i), (t, i + 1)], RED.stroke_width(3)))
            }))
            .unwrap();
        root.present().unwrap();
    }
    svg
}

const START: &str =
    "<!-- loadbench:start (written by `cargo run --release --example loadbench -- --write`) -->";
const END: &str = "<!-- loadbench:end -->";

fn write_docs(table: &str, svg: &str) {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::write(docs.join("loadbench.svg"), svg).unwrap();
    let file = docs.join("performance.md");
    let text = std::fs::read_to_string(&file).unwrap();
    let section = format!("{START}\n{table}\n![Ratios to bare, targets in red](loadbench.svg)\n{END}");
    let text = match (text.find(START), text.find(END)) {
        (Some(a), Some(b)) => format!("{}{section}{}", &text[..a], &text[b + END.len()..]),
        _ => format!("{text}\n## Load benchmark over sockets\n\n{section}\n"),
    };
    std::fs::write(&file, text).unwrap();
    eprintln!("wrote {} and docs/loadbench.svg", file.display());
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kib * 1024
}

/// `loadbench --memory`: bytes of resident memory per pending session in the memory store,
/// filled with 1,000,000 sessions through the `SessionStore` API.
fn memory_per_session() {
    use nanosession::session::Session;
    use nanosession::store::SessionStore;
    const N: u64 = 1_000_000;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let pay_to = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
        let before = rss();
        let store = MemorySessionStore::with_capacity(N as usize);
        let now = 1_700_000_000;
        for i in 0..N {
            let price = Raw::new(1_000_000_000_000_000_000_000_000);
            let session = Session::issue_with_tag(pay_to, price, i, now, Duration::from_secs(300)).unwrap();
            assert!(matches!(
                store.insert(&session, now).await.unwrap(),
                nanosession::store::Insert::Inserted
            ));
        }
        let used = rss() - before;
        println!(
            "memory store: {N} pending sessions in {:.1} MiB: {} bytes each",
            used as f64 / 1048576.0,
            used / N
        );
        drop(store);
    });
}
