//! The docs run as written: every shell block of the documentation marked ```` ```sh tested ````
//! is run, in order, against the real `carbon-ledger` binary and a fresh service, and what the
//! block shows as output must be what the commands print.
//!
//! How a tested block is read (docs/tutorial.md, "How these pages are tested", says the same for
//! writers):
//!
//! - Each command is a line, with its `\` continuations and its here-documents.
//! - `#` lines right under a command (no blank line between) are its expected standard output,
//!   the `# ` taken off. Other `#` lines are notes. A command without expected output must only
//!   succeed (exit 0).
//! - In an expected line, `…` stands for any text within the line; a line that is `…` alone
//!   stands for any number of lines. Expected output that is JSON is compared as JSON, so that a
//!   doc may wrap it for reading: a `"…"` value matches any value, and a `"…": "…"` member any
//!   other members.
//!
//! Every document runs in one shell (`bash`), in a fresh folder, as a reader's terminal would:
//! variables and files carry from one block to the next. Before its first block, a fresh
//! `carbon-ledger serve --data ./data` is started there, as the docs' "with the service running"
//! assumes. Two rewrites make the commands run on a test machine, and only these: the service's
//! real address replaces `http://127.0.0.1:8080` (it listens on a free port), and
//! `cargo run --release -p ledger-api --` becomes `carbon-ledger`, the binary these tests built,
//! which is first on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use serde_json::Value;
use support::{bin, Service};

/// The documents with tested blocks. A document that gains tested blocks is added here, and
/// [`every_document_with_tested_blocks_is_run`] says so if it is not.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "docs/tutorial.md",
    "docs/api.md",
    "docs/operations.md",
];

/// The address the docs show for the service.
const DOCUMENTED_URL: &str = "http://127.0.0.1:8080";

/// How the docs run the binary from a checkout.
const CARGO_RUN: &str = "cargo run --release -p ledger-api --";

/// The longest a document's commands may take, all together.
const DOCUMENT_TIMEOUT: Duration = Duration::from_secs(300);

/// How the CLI's refusals start: a shown output that starts so is an expected failure.
const REFUSAL_PREFIX: &str = "carbon-ledger: ";

/// One command of a tested block, with the output the doc shows for it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Step {
    /// The document and the line the command starts on, for messages.
    at: String,
    /// The command's text, as the shell reads it (continuations and here-documents included).
    command: String,
    /// The expected standard output, one line per `#` line; empty: not checked.
    expected: Vec<String>,
}

impl Step {
    /// Whether the doc shows this command refused: it must fail, and what it shows is the
    /// command's standard error.
    fn refused(&self) -> bool {
        self.expected
            .first()
            .is_some_and(|line| line.starts_with(REFUSAL_PREFIX))
    }
}

/// Whether a fence's info string marks a tested shell block: `sh` first, `tested` among the rest.
fn is_tested_fence(info: &str) -> bool {
    let mut words = info.split_whitespace();
    words.next() == Some("sh") && words.any(|w| w == "tested")
}

/// The here-document delimiter a line opens, if any (`<<'JSON'`, `<<"JSON"`, `<<JSON`, `<<-JSON`).
fn heredoc_delimiter(line: &str) -> Option<String> {
    let start = line.find("<<")? + 2;
    let rest = line[start..].trim_start_matches('-').trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The tested blocks of a markdown text, as steps, in order.
fn steps(name: &str, markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    while let Some((_, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let tested = is_tested_fence(info);
        // Inside a block: a tested one is read; any other is skipped to its closing fence.
        let mut output_open = false;
        while let Some((number, line)) = lines.next() {
            if line.starts_with("```") {
                break;
            }
            if !tested {
                continue;
            }
            let trimmed = line.trim_start();
            if trimmed.is_empty() {
                output_open = false;
            } else if let Some(comment) = trimmed.strip_prefix('#') {
                if output_open {
                    let text = comment.strip_prefix(' ').unwrap_or(comment);
                    if let Some(step) = steps.last_mut() {
                        step.expected.push(text.to_owned());
                    }
                }
            } else {
                let mut command = line.to_owned();
                let mut current = line.to_owned();
                loop {
                    if let Some(word) = heredoc_delimiter(&current) {
                        for (_, body) in lines.by_ref() {
                            command.push('\n');
                            command.push_str(body);
                            if body.trim() == word {
                                break;
                            }
                        }
                    }
                    if !current.ends_with('\\') {
                        break;
                    }
                    let Some((_, next)) = lines.next() else {
                        break;
                    };
                    command.push('\n');
                    command.push_str(next);
                    current = next.to_owned();
                }
                steps.push(Step {
                    at: format!("{name}:{}", number + 1),
                    command,
                    expected: Vec::new(),
                });
                output_open = true;
            }
        }
    }
    steps
}

/// Whether `text` matches `pattern`, where `…` stands for any run of characters.
fn line_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether the lines of `text` match the expected lines, where a `…` line stands for any number
/// of lines.
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "…" => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && lines_match(rest, more)),
    }
}

/// Whether a JSON value matches the expected one: `"…"` matches anything, a string with `…` in
/// it matches as a line does, and an object with a `"…"` member may have other members.
fn json_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if e == "…" => true,
        (Value::String(e), Value::String(a)) => line_matches(e, a),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| json_matches(e, a))
        }
        (Value::Object(e), Value::Object(a)) => {
            let open = e.contains_key("…");
            e.iter()
                .filter(|(k, _)| *k != "…")
                .all(|(k, v)| a.get(k).is_some_and(|a| json_matches(v, a)))
                && (open || a.keys().all(|k| e.contains_key(k)))
        }
        (e, a) => e == a,
    }
}

/// Whether what a command printed is what the doc shows.
fn output_matches(expected: &[String], stdout: &str) -> bool {
    let joined = expected.join("\n");
    if let (Ok(e), Ok(a)) = (
        serde_json::from_str::<Value>(&joined),
        serde_json::from_str::<Value>(stdout),
    ) {
        if e.is_object() || e.is_array() {
            return json_matches(&e, &a);
        }
    }
    let actual: Vec<&str> = stdout.trim_end_matches('\n').lines().collect();
    lines_match(expected, &actual)
}

/// The steps with the two rewrites that make them run here (see the module's docs).
fn rewritten(steps: &[Step], url: &str) -> Vec<Step> {
    steps
        .iter()
        .map(|s| Step {
            at: s.at.clone(),
            command: s
                .command
                .replace(CARGO_RUN, "carbon-ledger")
                .replace(DOCUMENTED_URL, url),
            expected: s
                .expected
                .iter()
                .map(|l| l.replace(DOCUMENTED_URL, url))
                .collect(),
        })
        .collect()
}

/// The shell script that runs the steps in `work`, each one's output, errors and exit status
/// kept in `record`, stopping at the first that fails.
fn script(steps: &[Step], work: &Path, record: &Path) -> String {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut text = format!("cd {} || exit 99\n", quote(work));
    for (i, step) in steps.iter().enumerate() {
        let out = quote(&record.join(format!("{i}.out")));
        let err = quote(&record.join(format!("{i}.err")));
        let status = quote(&record.join(format!("{i}.status")));
        let go_on = if step.refused() { "-ne" } else { "-eq" };
        text.push_str(&format!(
            "{{\n{}\n}} > {out} 2> {err} < /dev/null\nstatus=$?\necho $status > {status}\n[ $status {go_on} 0 ] || exit 0\n",
            step.command
        ));
    }
    text
}

/// Why a document's commands did not run as written, or `Ok` with how many ran.
fn run_document(name: &str, markdown: &str, url: &str, work: &Path) -> Result<usize, String> {
    let steps = rewritten(&steps(name, markdown), url);
    if steps.is_empty() {
        return Err(format!("{name} has no tested block"));
    }
    let record = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script_path = record.path().join("doc.sh");
    std::fs::write(&script_path, script(&steps, work, record.path())).map_err(|e| e.to_string())?;
    let bin_dir = bin().parent().expect("the binary's folder");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["--noprofile", "--norc"])
        .arg(&script_path)
        .env("PATH", path)
        .env_remove("CARBON_LEDGER_URL")
        .env_remove("CARBON_LEDGER_DATA")
        .env_remove("CARBON_LEDGER_ORIGIN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("bash does not start: {e}"))?;
    let deadline = Instant::now() + DOCUMENT_TIMEOUT;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "{name}: the commands took longer than {DOCUMENT_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = |i: usize, what: &str| {
        std::fs::read_to_string(record.path().join(format!("{i}.{what}"))).unwrap_or_default()
    };
    for (i, step) in steps.iter().enumerate() {
        let status = read(i, "status");
        let (out, err) = (read(i, "out"), read(i, "err"));
        if status.trim().is_empty() {
            return Err(format!(
                "{}: the shell stopped before this command:\n{}",
                step.at, step.command
            ));
        }
        if step.refused() {
            if status.trim() == "0" {
                return Err(format!(
                    "{}: this command succeeded, but the doc shows it refused:\n{}\nits output:\n{out}",
                    step.at, step.command
                ));
            }
            if !output_matches(&step.expected, &err) {
                return Err(format!(
                    "{}: this command's refusal is not what the doc shows:\n{}\nthe doc shows:\n{}\nit said:\n{err}",
                    step.at,
                    step.command,
                    step.expected.join("\n")
                ));
            }
            continue;
        }
        if status.trim() != "0" {
            return Err(format!(
                "{}: this command failed (exit status {}):\n{}\nits output:\n{out}\nits errors:\n{err}",
                step.at,
                status.trim(),
                step.command
            ));
        }
        if !step.expected.is_empty() && !output_matches(&step.expected, &out) {
            return Err(format!(
                "{}: this command's output is not what the doc shows:\n{}\nthe doc shows:\n{}\nit printed:\n{out}",
                step.at,
                step.command,
                step.expected.join("\n")
            ));
        }
    }
    Ok(steps.len())
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a document's tested blocks against a fresh service, and panics with the first command
/// that fails or whose output drifted.
fn document_runs_as_written(name: &str) {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "the docs use curl: install it (.ci/run does)"
    );
    let markdown = std::fs::read_to_string(repository().join(name)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let service = Service::start(&work.path().join("data"));
    let ran = run_document(name, &markdown, &service.url, work.path());
    match ran {
        Ok(n) => eprintln!("{name}: {n} commands ran as written"),
        Err(why) => panic!("{why}\n\nthe service's log:\n{}", service.log_text()),
    }
}

#[test]
fn the_readme_tour_runs_as_written() {
    document_runs_as_written("README.md");
}

#[test]
fn the_tutorial_runs_as_written() {
    document_runs_as_written("docs/tutorial.md");
}

#[test]
fn the_api_examples_run_as_written() {
    document_runs_as_written("docs/api.md");
}

#[test]
fn the_operations_commands_run_as_written() {
    document_runs_as_written("docs/operations.md");
}

/// A tested block nobody runs would drift unseen.
#[test]
fn every_document_with_tested_blocks_is_run() {
    let mut found = Vec::new();
    let mut folders = vec![repository(), repository().join("docs")];
    folders.push(repository().join("ledger-api"));
    for folder in folders {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&path).unwrap();
                if !steps("", &text).is_empty() {
                    let relative = path.strip_prefix(repository()).unwrap();
                    found.push(relative.display().to_string());
                }
            }
        }
    }
    found.sort();
    let mut listed: Vec<String> = DOCUMENTS.iter().map(|d| (*d).to_owned()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "add the document to DOCUMENTS in tests/docs.rs"
    );
}

/// The reader itself: commands, continuations, here-documents, outputs and notes.
#[test]
fn tested_blocks_are_read_as_documented() {
    let markdown = "intro\n\n```sh\nnot tested\n```\n\n```sh tested\n# a note\nURL=x\necho a \\\n  b\n# a b\n\n# another note\ncat > f <<'JSON'\n# not output\nJSON\ncat f   # a note on the line\n# # not output\n```\n";
    let got = steps("doc.md", markdown);
    let commands: Vec<&str> = got.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(
        commands,
        [
            "URL=x",
            "echo a \\\n  b",
            "cat > f <<'JSON'\n# not output\nJSON",
            "cat f   # a note on the line"
        ]
    );
    assert_eq!(got[1].expected, ["a b"]);
    assert_eq!(got[3].expected, ["# not output"]);
    assert!(got[0].expected.is_empty() && got[2].expected.is_empty());
    assert_eq!(got[1].at, "doc.md:10");
}

/// The matcher: wildcards within a line, any lines, and JSON compared as JSON.
#[test]
fn shown_output_is_matched_as_documented() {
    let e = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    assert!(output_matches(&e(&["size 20"]), "size 20\n"));
    assert!(!output_matches(&e(&["size 20"]), "size 21\n"));
    assert!(output_matches(
        &e(&["root …, size 20"]),
        "root ab12, size 20\n"
    ));
    assert!(!output_matches(
        &e(&["root …, size 20"]),
        "root ab12, size 2\n"
    ));
    assert!(output_matches(&e(&["first", "…", "last"]), "first\nlast\n"));
    assert!(output_matches(
        &e(&["first", "…", "last"]),
        "first\na\nb\nlast\n"
    ));
    assert!(!output_matches(&e(&["first", "…"]), "second\n"));
    assert!(!output_matches(&e(&["one"]), "one\ntwo\n"));
    // JSON, wrapped for reading, with wildcards.
    let shown = e(&[
        r#"{"seq": 3, "leaf_hash": "…","#,
        r#" "accepted_at": "2026-…Z"}"#,
    ]);
    assert!(output_matches(
        &shown,
        r#"{"seq":3,"leaf_hash":"ab","accepted_at":"2026-01-01T00:00:00Z"}"#
    ));
    assert!(!output_matches(
        &shown,
        r#"{"seq":4,"leaf_hash":"ab","accepted_at":"2026-01-01T00:00:00Z"}"#
    ));
    assert!(!output_matches(
        &shown,
        r#"{"seq":3,"leaf_hash":"ab","accepted_at":"2026-01-01T00:00:00Z","extra":1}"#
    ));
    assert!(output_matches(
        &e(&[r#"{"seq": 3, "…": "…"}"#]),
        r#"{"seq":3,"extra":1}"#
    ));
}

/// A command that fails, or prints what the doc does not show, fails the document.
#[test]
fn a_failing_command_or_drifted_output_fails_the_document() {
    let work = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9";
    let good = "```sh tested\nX=$(echo hello)\necho \"$X\"\n# hello\n```\n";
    assert_eq!(run_document("good.md", good, url, work.path()), Ok(2));
    let drifted = "```sh tested\necho hello\n# goodbye\n```\n";
    let why = run_document("drifted.md", drifted, url, work.path()).unwrap_err();
    assert!(
        why.contains("drifted.md:2") && why.contains("not what the doc shows"),
        "{why}"
    );
    let failing = "```sh tested\nfalse\necho never\n```\n";
    let why = run_document("failing.md", failing, url, work.path()).unwrap_err();
    assert!(
        why.contains("failing.md:2") && why.contains("failed"),
        "{why}"
    );
    // A refusal the doc shows must happen, and say what the doc shows.
    let refused = "```sh tested\ncarbon-ledger verify --export none --checkpoint none --operator-key x\n# carbon-ledger: --operator-key \"x\" is …\necho after\n# after\n```\n";
    assert_eq!(run_document("refused.md", refused, url, work.path()), Ok(2));
    let accepted = "```sh tested\ntrue\n# carbon-ledger: refused\n```\n";
    let why = run_document("accepted.md", accepted, url, work.path()).unwrap_err();
    assert!(why.contains("the doc shows it refused"), "{why}");
    // The documented address and `cargo run` are rewritten, and only those.
    let rewrites = format!("```sh tested\necho {DOCUMENTED_URL}/v1\n# {DOCUMENTED_URL}/v1\n{CARGO_RUN} --version\n# carbon-ledger …\n```\n");
    assert_eq!(
        run_document("rewrites.md", &rewrites, url, work.path()),
        Ok(2)
    );
}

/// The docs cite the repository's own files: every relative link of the README and of `docs/`
/// leads to a file that exists, and none cites the product brief that is not in the repository
/// (`DESIGN §2/§3` once was, in the docs and the demo's first line).
#[test]
fn the_docs_cite_only_files_of_the_repository() {
    let mut documents = vec![
        repository().join("README.md"),
        repository().join("ARCHITECTURE.md"),
    ];
    for entry in std::fs::read_dir(repository().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    for document in documents {
        let text = std::fs::read_to_string(&document).unwrap();
        assert!(
            !text.contains("DESIGN"),
            "{} cites DESIGN, which is not in the repository",
            document.display()
        );
        let folder = document.parent().unwrap();
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            assert!(
                folder.join(file).exists(),
                "{} links to {target}, which does not exist",
                document.display()
            );
        }
    }
    for source in ["ledger-api/src/demo.rs", "ledger-core/src/reference.rs"] {
        let text = std::fs::read_to_string(repository().join(source)).unwrap();
        assert!(!text.contains("DESIGN"), "{source} cites DESIGN");
    }
}
