//! The `paybridge-admin` binary on a temporary SQLite database: exit codes and messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

const SECRET: &str = "PLANTED-cli-9e107d";

struct Env {
    dir: tempfile::TempDir,
    url: String,
    master_key: String,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("admin.db").display()
        );
        let (_, master_key) = paybridge_admin::MasterKey::generate().unwrap();
        Env {
            dir,
            url,
            master_key,
        }
    }

    fn run_with(&self, args: &[&str], key: bool) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybridge-admin"));
        cmd.args(args)
            .arg("--database-url")
            .arg(&self.url)
            .current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env("USER", "tester");
        if key {
            cmd.env("PAYBRIDGE_MASTER_KEY", &self.master_key);
        } else {
            cmd.env_remove("PAYBRIDGE_MASTER_KEY");
        }
        cmd.output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, true)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tenant(id: &str, name: &str) -> String {
    format!(
        "id = \"{id}\"\nname = \"{name}\"\napi_keys = [\"{}\"]\nwebhook_secret = \"{SECRET}\"\n",
        paybridge_core::tenant::hash_api_key(&format!("key-{id}"))
    )
}

#[test]
fn exit_codes_follow_the_contract() {
    let env = Env::new();
    let hashed = env.run(&["hash-token", "tok"]);
    assert_eq!(code(&hashed), 0);
    assert_eq!(
        out(&hashed).trim(),
        paybridge_core::tenant::hash_api_key("tok")
    );
    assert_eq!(code(&env.run(&["no-such-command"])), 1, "usage error");
    assert_eq!(code(&env.run(&["--help"])), 0);

    let good = env.write("t1.toml", &tenant("t1", "One"));
    let put = env.run(&["put", &good]);
    assert_eq!(code(&put), 0, "{}", err(&put));
    assert_eq!(out(&put).trim(), "created t1 (version 1)");

    let get = env.run(&["get", "t1"]);
    assert_eq!(code(&get), 0);
    assert!(
        out(&get).contains("webhook_secret = { set = true }"),
        "{}",
        out(&get)
    );
    let json = env.run(&["get", "t1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&json)).unwrap();
    assert_eq!(v["webhook_secret"], serde_json::json!({"set": true}));

    let missing = env.run(&["get", "nope"]);
    assert_eq!(code(&missing), 3);
    assert!(
        err(&missing).contains("tenant \"nope\" not found"),
        "{}",
        err(&missing)
    );
    assert_eq!(code(&env.run(&["delete", "nope"])), 3);
    assert_eq!(code(&env.run(&["enable", "t1", "nope"])), 3);
    assert_eq!(code(&env.run(&["put", "/no/such/file.toml"])), 1);

    let bad = env.write(
        "bad.toml",
        "id = \"t1\"\nname = 3\napi_keys = [\"plain\"]\ncolour = \"x\"\n",
    );
    for args in [["put", &bad], ["validate", &bad]] {
        let o = env.run(&args);
        assert_eq!(code(&o), 2, "{args:?}");
        for needle in [
            "name: must be a string",
            "api_keys[0]: must be",
            "colour: unknown key",
        ] {
            assert!(err(&o).contains(needle), "{needle} missing: {}", err(&o));
        }
    }
    let syntax = env.write("syntax.toml", "id = \n");
    assert_eq!(code(&env.run(&["validate", &syntax])), 2);
    assert_eq!(code(&env.run(&["validate", &good])), 0);

    let rotated = env.run(&["rotate-key", "t1"]);
    assert_eq!(code(&rotated), 0, "{}", err(&rotated));
    assert!(out(&rotated).trim().starts_with("pk_"));

    let list = env.run(&["list"]);
    assert!(out(&list).starts_with("t1\tv2\t"), "{}", out(&list));

    let audit = env.run(&["audit"]);
    assert_eq!(code(&audit), 0);
    assert!(
        out(&audit).contains("cli:tester rotate_api_key t1"),
        "{}",
        out(&audit)
    );
    assert!(!out(&audit).contains(SECRET));

    assert_eq!(code(&env.run(&["delete", "t1"])), 0);
    assert_eq!(code(&env.run(&["delete", "t1"])), 3);

    let db = std::fs::read(env.dir.path().join("admin.db")).unwrap();
    assert!(
        !db.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the database file holds the secret in plaintext"
    );
}

#[test]
fn import_keeps_database_copies_unless_overwrite_and_export_writes_them_back() {
    let env = Env::new();
    env.write("tenants/a.toml", &tenant("a", "A from file"));
    let first = env.run(&["import", "tenants"]);
    assert_eq!(code(&first), 0, "{}", err(&first));
    assert!(out(&first).contains("\ta\tcreated"), "{}", out(&first));

    env.write("tenants/a.toml", &tenant("a", "A edited"));
    env.write("tenants/b.toml", &tenant("b", "B"));
    let second = env.run(&["import", "tenants"]);
    assert!(
        out(&second).contains("\ta\tskipped") && out(&second).contains("\tb\tcreated"),
        "{}",
        out(&second)
    );
    assert!(out(&env.run(&["get", "a"])).contains("name = \"A from file\""));

    let third = env.run(&["import", "tenants", "--overwrite"]);
    assert!(out(&third).contains("\ta\treplaced"), "{}", out(&third));
    assert!(out(&env.run(&["get", "a"])).contains("name = \"A edited\""));

    env.write("tenants/c.toml", "id = \"c\"\napi_keys = 1\n");
    let invalid = env.run(&["import", "tenants", "--overwrite"]);
    assert_eq!(code(&invalid), 2);
    assert!(
        err(&invalid).contains("c.toml: api_keys: must be a list"),
        "{}",
        err(&invalid)
    );

    assert_eq!(code(&env.run(&["export"])), 1, "all tenants need --dir");
    let exported = env.run(&["export", "--dir", "out"]);
    assert_eq!(code(&exported), 0, "{}", err(&exported));
    let a = std::fs::read_to_string(env.dir.path().join("out/a.toml")).unwrap();
    assert!(
        a.contains("webhook_secret = { set = true }") && !a.contains(SECRET),
        "{a}"
    );
    assert!(Path::new(&env.dir.path().join("out/b.toml")).exists());

    // A masked export imports back onto the same database: the stored secrets are kept.
    let back = env.run(&["import", "out", "--overwrite"]);
    assert_eq!(code(&back), 0, "{}", err(&back));
    let plain = env.run(&["export", "a", "--with-secrets"]);
    assert!(out(&plain).contains(SECRET), "{}", out(&plain));
}

#[test]
fn without_a_master_key_secrets_need_explicit_plaintext_mode() {
    let env = Env::new();
    let file = env.write("t.toml", &tenant("t", "T"));
    let refused = env.run_with(&["put", &file], false);
    assert_eq!(code(&refused), 2);
    assert!(
        err(&refused).contains("--allow-plaintext-secrets"),
        "{}",
        err(&refused)
    );
    let allowed = env.run_with(&["put", &file, "--allow-plaintext-secrets"], false);
    assert_eq!(code(&allowed), 0, "{}", err(&allowed));
    let bad_key = Command::new(env!("CARGO_BIN_EXE_paybridge-admin"))
        .args(["list", "--database-url", &env.url])
        .env("PAYBRIDGE_MASTER_KEY", "too-short")
        .output()
        .unwrap();
    assert_eq!(code(&bad_key), 1);
    assert!(!err(&bad_key).contains("too-short"), "{}", err(&bad_key));
}

#[test]
fn platforms_are_managed_from_the_command_line() {
    let env = Env::new();
    let app_key = include_str!("../../fixtures/vectors/app_private_pkcs8.pem");
    let alipay_public =
        include_str!("../../providers/alipay-app/sandbox-keys/alipay_sandbox_public.pem");
    let platform = env.write(
        "platforms/acme.toml",
        &format!(
            "id = \"acme\"\nname = \"Acme\"\n[alipay_app]\napp_id = \"2021000000000100\"\nprivate_key = '''\n{app_key}'''\nalipay_public_key = '''\n{alipay_public}'''\n"
        ),
    );
    let put = env.run(&["platform", "put", &platform]);
    assert_eq!(code(&put), 0, "{}", err(&put));
    assert_eq!(out(&put).trim(), "created platform acme (version 1)");

    let tenant = env.write(
        "shop.toml",
        &format!(
            "{}[providers.alipay_app]\nplatform = \"acme\"\napp_auth_token = \"{SECRET}\"\nauth_app_id = \"2021000000000201\"\nseller_id = \"2088000000000201\"\n",
            tenant("shop", "Shop")
        ),
    );
    let put = env.run(&["put", &tenant]);
    assert_eq!(code(&put), 0, "{}", err(&put));

    let list = env.run(&["platform", "list"]);
    assert!(out(&list).starts_with("acme\tv1\t"), "{}", out(&list));
    assert!(
        out(&list).contains("alipay_app\ttenants: shop"),
        "{}",
        out(&list)
    );
    let get = env.run(&["platform", "get", "acme"]);
    assert_eq!(code(&get), 0);
    assert!(
        out(&get).contains("private_key = { set = true }"),
        "{}",
        out(&get)
    );
    assert!(!out(&get).contains("PRIVATE KEY"), "{}", out(&get));
    // The tenant list is of tenants only.
    assert!(!out(&env.run(&["list"])).contains("acme"));

    let refused = env.run(&["platform", "delete", "acme"]);
    assert_ne!(code(&refused), 0);
    assert!(
        err(&refused).contains("used by tenant(s) shop"),
        "{}",
        err(&refused)
    );
    assert_eq!(code(&env.run(&["delete", "shop"])), 0);
    assert_eq!(code(&env.run(&["platform", "delete", "acme"])), 0);
    let audit = out(&env.run(&["audit", "--limit", "5"]));
    assert!(audit.contains("delete platform:acme"), "{audit}");
    assert!(!audit.contains(SECRET), "{audit}");
}

#[test]
fn paybridge_admin_is_also_a_subcommand_of_the_server_binary() {
    let env = Env::new();
    let good = env.write("t1.toml", &tenant("t1", "One"));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_paybridge"))
            .arg("admin")
            .args(args)
            .arg("--database-url")
            .arg(&env.url)
            .current_dir(env.dir.path())
            .env_remove("DATABASE_URL")
            .env("PAYBRIDGE_MASTER_KEY", &env.master_key)
            .output()
            .unwrap()
    };
    let put = run(&["put", &good]);
    assert_eq!(code(&put), 0, "{}", err(&put));
    assert_eq!(out(&put).trim(), "created t1 (version 1)");
    // The same database through the other binary.
    assert!(out(&env.run(&["list"])).starts_with("t1\tv1\t"));
    let missing = run(&["get", "nope"]);
    assert_eq!(code(&missing), 3, "{}", err(&missing));
    let help = Command::new(env!("CARGO_BIN_EXE_paybridge"))
        .args(["admin", "--help"])
        .output()
        .unwrap();
    assert_eq!(code(&help), 0);
    assert!(
        out(&help).contains("Usage: paybridge admin"),
        "{}",
        out(&help)
    );
}

/// The CLI reads the server's config type: the same file and the same
/// `PAYBRIDGE_<SECTION>__<KEY>` overrides, and its `--help` names them.
#[test]
fn the_cli_reads_the_servers_config_and_its_environment_overrides() {
    let env = Env::new();
    let good = env.write("t1.toml", &tenant("t1", "One"));
    // A config file naming another database, overridden from the environment as the server
    // would be: the CLI must use the override.
    let config = env.write(
        "paybridge.toml",
        "[database]\nurl = \"sqlite:///nonexistent/dir/never.db?mode=rwc\"\n",
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_paybridge"))
            .arg("admin")
            .args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(env.dir.path())
            .env_remove("DATABASE_URL")
            .env("PAYBRIDGE_DATABASE__URL", &env.url)
            .env("PAYBRIDGE_MASTER_KEY", &env.master_key)
            .output()
            .unwrap()
    };
    let put = run(&["put", &good]);
    assert_eq!(code(&put), 0, "{}", err(&put));
    // The same database, named on the command line.
    assert!(out(&env.run(&["list"])).starts_with("t1\tv1\t"));
    // Without the override the file's database is used, and fails.
    let without = Command::new(env!("CARGO_BIN_EXE_paybridge-admin"))
        .args(["list", "--config", &config])
        .current_dir(env.dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("PAYBRIDGE_DATABASE__URL")
        .env("PAYBRIDGE_MASTER_KEY", &env.master_key)
        .output()
        .unwrap();
    assert_ne!(code(&without), 0, "{}", out(&without));
    for binary in [
        env!("CARGO_BIN_EXE_paybridge-admin"),
        env!("CARGO_BIN_EXE_paybridge"),
    ] {
        let help = Command::new(binary).arg("--help").output().unwrap();
        assert!(
            out(&help).contains("PAYBRIDGE_<SECTION>__<KEY>"),
            "{binary}: {}",
            out(&help)
        );
    }
}
