//! The `meshid` binary's contract: output lines, their order, and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn meshid(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshid"));
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn meshid");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        // Write from a thread so a large input cannot deadlock against full stdout.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    child.wait_with_output().unwrap()
}

fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8(o.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn arguments_are_checked_in_order() {
    let o = meshid(
        &[
            "id",
            "check",
            "spiffe://example.org/web",
            "spiffe://example.org/",
            "spiffe://a/b",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "ok spiffe://example.org/web");
    assert!(
        lines[1].starts_with("err ") && lines[1].contains("must not end with '/'"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "ok spiffe://a/b");
}

#[test]
fn all_valid_exits_zero() {
    let o = meshid(&["id", "check", "spiffe://a/b", "spiffe://c"], None);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout_lines(&o), ["ok spiffe://a/b", "ok spiffe://c"]);
}

#[test]
fn refusals_name_the_rule() {
    let cases = [
        ("http://a/b", "scheme"),
        ("SPIFFE://a/b", "lowercase"),
        ("spiffe://", "trust domain is empty"),
        ("spiffe://Ab/c", "trust domain character 'A'"),
        ("spiffe://a:80/c", "port"),
        ("spiffe://u@a/c", "userinfo"),
        ("spiffe://a/b?c", "query"),
        ("spiffe://a//c", "empty segment"),
        ("spiffe://a/./c", "'.' or '..' segment"),
        ("spiffe://a/%41", "percent-encoding"),
        ("spiffe://a/b c", "path character 0x20"),
    ];
    for (input, words) in cases {
        let o = meshid(&["id", "check", input], None);
        assert_eq!(o.status.code(), Some(1), "{input}");
        let lines = stdout_lines(&o);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("err ") && lines[0].contains(words),
            "{input}: {}",
            lines[0]
        );
        assert!(lines[0].contains("SPIFFE-ID §"), "{}", lines[0]);
    }
}

#[test]
fn normalize_flag() {
    let o = meshid(
        &[
            "id",
            "check",
            "--normalize",
            "SPIFFE://Example.ORG/Keep/Case",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout_lines(&o), ["ok spiffe://example.org/Keep/Case"]);
    let o = meshid(&["id", "check", "SPIFFE://Example.ORG/Keep/Case"], None);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn stdin_one_id_per_line_in_order() {
    let input = b"spiffe://a/b\r\n\nspiffe://a/\xff\nspiffe://a/\0x\nSPIFFE://A/b\nspiffe://c";
    let o = meshid(&["id", "check"], Some(input));
    assert_eq!(o.status.code(), Some(1));
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0], "ok spiffe://a/b");
    assert!(lines[1].starts_with("err empty"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("err ") && lines[2].contains("0xff"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("err ") && lines[3].contains("0x00"),
        "{}",
        lines[3]
    );
    assert!(lines[4].starts_with("err "), "{}", lines[4]);
    assert_eq!(lines[5], "ok spiffe://c");

    let o = meshid(&["id", "check", "--normalize"], Some(b"SPIFFE://A/b\n"));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout_lines(&o), ["ok spiffe://a/b"]);
}

#[test]
fn no_input_at_all_is_not_success() {
    let o = meshid(&["id", "check"], Some(b""));
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no SPIFFE ID given"));
}

#[cfg(unix)]
#[test]
fn unreadable_input_is_exit_two() {
    // Standard input is a directory: reading it fails.
    let o = Command::new(env!("CARGO_BIN_EXE_meshid"))
        .args(["id", "check"])
        .stdin(std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!o.stderr.is_empty());
}

#[test]
fn the_readme_example_is_what_the_binary_prints() {
    let o = meshid(
        &[
            "id",
            "check",
            "spiffe://example.org/web",
            "spiffe://example.org/a//b",
        ],
        None,
    );
    let readme = include_str!("../README.md");
    for line in stdout_lines(&o) {
        assert!(
            readme.contains(&format!("# {line}\n")),
            "README lacks {line:?}"
        );
    }
    let o = meshid(
        &["id", "check", "--normalize"],
        Some(b"SPIFFE://Example.org/x\n"),
    );
    assert!(readme.contains(&format!("# {}\n", stdout_lines(&o)[0])));
}

#[test]
fn each_verdict_is_written_as_its_line_is_read() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshid"))
        .args(["id", "check"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for (input, want) in [
        ("spiffe://a/b\n", "ok spiffe://a/b\n"),
        ("spiffe://c\n", "ok spiffe://c\n"),
    ] {
        stdin.write_all(input.as_bytes()).unwrap();
        stdin.flush().unwrap();
        // With stdin still open, the answer must already be there.
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, want);
    }
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[cfg(unix)]
#[test]
fn invalid_utf8_argument_is_an_err_line_not_a_usage_error() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let o = Command::new(env!("CARGO_BIN_EXE_meshid"))
        .args([
            OsStr::new("id"),
            OsStr::new("check"),
            OsStr::from_bytes(b"spiffe://a/\xc3\x28"),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("err ") && lines[0].contains("0xc3"),
        "{}",
        lines[0]
    );
}

#[test]
fn a_mebibyte_line_is_refused_for_its_length() {
    let mut input = b"spiffe://a/".to_vec();
    input.extend(std::iter::repeat_n(b'b', 1 << 20));
    input.extend_from_slice(b"\nspiffe://a/ok\n");
    let o = meshid(&["id", "check"], Some(&input));
    assert_eq!(o.status.code(), Some(1));
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("err ") && lines[0].contains(&format!("{} bytes", (1 << 20) + 11)),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "ok spiffe://a/ok");
}

#[test]
fn usage_errors_exit_two() {
    for args in [&["id", "check", "--bogus"][..], &["id"], &[], &["nope"]] {
        let o = meshid(args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(meshid(&["--help"], None).status.code(), Some(0));
    assert_eq!(meshid(&["--version"], None).status.code(), Some(0));
}

#[test]
fn random_lines_never_panic_and_agree_with_the_library() {
    // A small deterministic generator: no extra dependency, same input every run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"abcXYZ019._-/:@?#% \0\xff\xc3\r";
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..2000 {
        let mut line = if next() % 4 == 0 {
            b"SPIFFE://".to_vec()
        } else {
            b"spiffe://".to_vec()
        };
        for _ in 0..(next() % 24) {
            let [pick, byte, ..] = next().to_le_bytes();
            let b = if pick % 10 == 0 {
                byte
            } else {
                alphabet[usize::from(byte) % alphabet.len()]
            };
            if b != b'\n' {
                line.push(b);
            }
        }
        // The reader drops one '\r' before '\n'; keep the oracle's input the same.
        let checked = line.strip_suffix(b"\r").unwrap_or(&line).to_vec();
        expected.push(meshid::SpiffeId::from_bytes(&checked).map(|id| id.to_string()));
        input.extend_from_slice(&line);
        input.push(b'\n');
    }
    let o = meshid(&["id", "check"], Some(&input));
    assert_eq!(o.status.code(), Some(1), "{:?}", o.status);
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), expected.len());
    for (line, want) in lines.iter().zip(&expected) {
        match want {
            Ok(id) => assert_eq!(line, &format!("ok {id}")),
            Err(_) => assert!(line.starts_with("err "), "{line}"),
        }
    }
}
