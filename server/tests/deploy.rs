//! The deployment files, linted: the Dockerfile (multi-stage, non-root, HEALTHCHECK, building the
//! binaries the image copies), the config it ships (it must load), compose.yaml's overrides (they
//! must name real config keys), and the systemd unit (`systemd-analyze verify` when the machine
//! has it). Docker itself may not run here, so the image is not built by the tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use paybridge_server::config::Config;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The instructions of a Dockerfile, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_what_it_copies_and_runs_as_a_user_with_a_healthcheck() {
    let all = instructions(&read("Dockerfile"));
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| i.starts_with("FROM "))
        .map(|(n, _)| n)
        .collect();
    assert!(stages.len() >= 2, "not multi-stage: {all:?}");
    let last = &all[*stages.last().unwrap()..];

    // The build: release, locked, and the binaries the image copies are the server's.
    let build = all
        .iter()
        .find(|i| i.starts_with("RUN cargo build"))
        .expect("a cargo build");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    let cargo_toml = read("server/Cargo.toml");
    let bins: Vec<&str> = build
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    assert!(bins.contains(&"paybridge"), "{build}");
    for bin in &bins {
        assert!(
            cargo_toml.contains(&format!("name = \"{bin}\"")),
            "{bin} is not a binary of the server crate"
        );
    }
    for copy in last.iter().filter(|i| i.starts_with("COPY --from=build")) {
        let source = copy.split_whitespace().nth(2).unwrap();
        let name = source.rsplit('/').next().unwrap();
        assert!(
            bins.contains(&name),
            "copies {source}, which the build does not make"
        );
    }
    for copy in last
        .iter()
        .filter(|i| i.starts_with("COPY ") && !i.contains("--from"))
    {
        let source = copy.split_whitespace().nth(1).unwrap();
        assert!(Path::new(ROOT).join(source).exists(), "{source} is missing");
    }

    // It runs as a user that is not root, and says how to check it is alive.
    let user = last
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("a USER in the last stage");
    let uid = user.split(':').next().unwrap().trim();
    assert!(uid != "root" && uid != "0", "runs as {user}");
    let health = last
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    assert!(health.contains("/livez"), "{health}");
    assert!(last.iter().any(|i| i.starts_with("ENTRYPOINT")));
}

#[test]
fn the_shipped_config_loads_with_the_compose_overrides() {
    let config = read("deploy/paybridge.toml");
    Config::from_toml_and_env(&config, Vec::new()).expect("deploy/paybridge.toml loads");
    let compose = read("compose.yaml");
    assert_eq!(
        compose.matches("build: .").count(),
        2,
        "two paybridge instances"
    );
    // Every PAYBRIDGE_<SECTION>__<KEY> compose sets is a key of the config.
    let overrides: Vec<(String, String)> = compose
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.starts_with("PAYBRIDGE_") && k.contains("__"))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect();
    assert!(
        overrides
            .iter()
            .any(|(k, _)| k == "PAYBRIDGE_DATABASE__URL"),
        "{overrides:?}"
    );
    let loaded = Config::from_toml_and_env(&config, overrides.clone())
        .unwrap_or_else(|e| panic!("{e}: {overrides:?}"));
    assert!(
        loaded.database.url.starts_with("postgres://"),
        "{}",
        loaded.database.url
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: no systemd-analyze on this machine");
        return;
    };
    assert!(version.status.success());
    let unit = read("deploy/paybridge.service");
    for setting in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(setting), "{setting} missing");
    }
    // Verified with this build's binary (and the secrets file optional): the rest as shipped.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paybridge.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/paybridge", env!("CARGO_BIN_EXE_paybridge"))
            .replace("EnvironmentFile=/", "EnvironmentFile=-/"),
    )
    .unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && !stderr.contains(path.to_str().unwrap()),
        "systemd-analyze verify: {stderr}"
    );
}
