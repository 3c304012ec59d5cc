#![cfg(test)]
//! The `petrel` command line as an operator meets it: `check-config`
//! (with and without `--syntax`), `config eval`, and exit codes.

mod common;

use std::path::PathBuf;

use common::Instance;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/momentum")
        .join(name)
}

fn petrel(args: &[&str]) -> petrel_tests::Finished {
    petrel_tests::run(
        std::process::Command::new(common::binary()).args(args),
        petrel_tests::CLIENT_TIMEOUT,
    )
}

#[test]
fn check_config_prints_every_problem_with_its_place() {
    let instance = Instance::new(
        "TLS = \"sometimes\"\nESMTP_Listener {\n  Listen \"127.0.0.1:0\" {\n    Use_SSL = true\n  }\n}\nopendkim { }\n",
    );
    let checked = instance.command(&["check-config"]);
    assert_eq!(checked.status.code(), Some(1), "{}", checked.output);
    let file = instance.config.display().to_string();
    let errors: Vec<&str> = checked.output.lines().collect();
    assert_eq!(errors.len(), 3, "{}", checked.output);
    assert!(
        errors[0].starts_with(&format!("{file}:1:7: error: ")),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with(&format!("{file}:4:5: error: ")),
        "{}",
        errors[1]
    );
    assert!(errors[1].contains("Use_SSL"), "{}", errors[1]);
    assert!(
        errors[2].starts_with(&format!("{file}:7:1: error: ")),
        "{}",
        errors[2]
    );
    assert!(errors[2].contains("opendkim"), "{}", errors[2]);
    // The syntax is fine.
    let syntax = instance.command(&["check-config", "--syntax"]);
    assert!(syntax.status.success(), "{}", syntax.output);
    // And petrel refuses to run it, with the same messages.
    let run = instance.command(&[]);
    assert_eq!(run.status.code(), Some(1), "{}", run.output);
    assert!(run.output.contains("opendkim"), "{}", run.output);
}

#[test]
fn warnings_do_not_fail_the_check() {
    let instance = Instance::new(
        "ESMTP_Listener {\n  TLS_Allow_Renegotiation = true\n  Listen \"127.0.0.1:0\" { TLS_Self_Signed = true }\n}\n",
    );
    let checked = instance.command(&["check-config"]);
    assert!(checked.status.success(), "{}", checked.output);
    let file = instance.config.display().to_string();
    assert!(
        checked
            .output
            .starts_with(&format!("{file}:2:3: warning: ")),
        "{}",
        checked.output
    );
}

#[test]
fn syntax_check_of_the_samples() {
    let good = sample("24-regex-domain-unquoted-v3.conf");
    let checked = petrel(&["check-config", "--syntax", "-c", good.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", checked.output);
    let broken = sample("38-ha-proxy-client-unbalanced.conf");
    let checked = petrel(&["check-config", "--syntax", "-c", broken.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(1), "{}", checked.output);
    assert_eq!(
        checked.output.trim(),
        format!(
            "{}:9:1: error: expected \"}}\" to close \"binding\" opened at 2:1, found end of file",
            broken.display()
        )
    );
}

#[test]
fn config_eval_answers_like_momentums_console() {
    let instance = Instance::new(
        "TLS = \"required\"\nBinding_Group \"g\" {\n  Binding \"b\" {\n    Domain \"example.com\" { TLS = \"no\" }\n  }\n}\n\
         ESMTP_Listener {\n  Listen \"127.0.0.1:2600\" {\n    Peer \"10.0.0.0/8\" { TLS_Allow_Renegotiation = false }\n  }\n}\n",
    );
    let file = instance.config.display().to_string();
    let eval = |words: &str| {
        let mut args = vec!["config", "eval"];
        args.extend(words.split(' '));
        instance.command(&args)
    };
    let answer = eval("binding b domain example.com TLS");
    assert!(answer.status.success(), "{}", answer.output);
    assert_eq!(
        answer.stdout,
        format!("TLS = \"no\"\n# from: binding_group \"g\" binding \"b\" domain \"example.com\" at {file}:4\n")
    );
    let answer = eval("domain other.example TLS");
    assert_eq!(
        answer.stdout,
        format!("TLS = \"required\"\n# from: global at {file}:1\n")
    );
    let answer = eval("ESMTP_Listener Listen 127.0.0.1:2600 Peer 10.1.2.3 TLS_Allow_Renegotiation");
    assert_eq!(
        answer.stdout,
        format!(
            "TLS_Allow_Renegotiation = false\n# from: ESMTP_Listener Listen \"127.0.0.1:2600\" Peer \"10.0.0.0/8\" at {file}:9\n"
        )
    );
    let answer =
        eval("ESMTP_Listener Listen 127.0.0.1:2600 Peer 192.0.2.1 TLS_Allow_Renegotiation");
    assert_eq!(
        answer.stdout,
        "TLS_Allow_Renegotiation = true\n# from: default\n"
    );
    let answer = eval("domain example.com No_Such_Option");
    assert_eq!(answer.status.code(), Some(1), "{}", answer.output);
    assert!(
        answer.output.contains("No_Such_Option"),
        "{}",
        answer.output
    );
    // An inbound option has no place in a domain scope.
    let answer = eval("domain example.com Idle_Time");
    assert_eq!(answer.status.code(), Some(1), "{}", answer.output);
}
