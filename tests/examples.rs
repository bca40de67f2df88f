//! The README's first command must keep working: run the built demo and gRPC examples (which
//! `cargo test` builds next to the tests) and check what they print.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

fn run(name: &str) -> String {
    let output = Command::new(example(name)).env("RUST_LOG", "off").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{name} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn the_demo_pays_is_served_and_refuses_the_replay() {
    let out = run("demo");
    assert!(out.contains("402 Payment Required"), "{out}");
    assert!(out.contains("200 OK"), "{out}");
    assert!(out.contains("PAYMENT-RESPONSE: success=true"), "{out}");
    assert!(out.contains("402 already_spent"), "{out}");
    let now = out.lines().find(|l| l.trim_start().starts_with("now")).expect("the balances after receiving");
    assert!(
        now.contains("(+0 XNO receivable)") && !now.contains("merchant 0 XNO"),
        "the merchant received it: {now}"
    );
}

#[test]
fn the_grpc_example_pays_unary_and_streaming_calls() {
    let out = run("grpc");
    assert!(out.contains("ResourceExhausted: payment_required"), "{out}");
    assert!(out.contains("Paid -> block "), "{out}");
    assert!(out.contains("payment-response metadata: true"), "{out}");
    assert!(out.contains("AlreadyExists: already_granted"), "{out}");
    assert_eq!(out.matches("PaidStream -> tick").count(), 3, "{out}");
}
