//! Every shell command of the README runs as written after the set-up (issue 20).
//!
//! The test reads README.md's ```bash blocks, joins continued lines, and runs each block as
//! one bash script (so `model=…` lines carry on) in a sandbox that looks like the repository
//! root after the set-up: links to `target/`, `scripts/`, `.venv/`, copies of `datasets/` and
//! the tracked `checkpoints/`. Only budgets and sizes change, here and not in the README:
//! `--iterations 2`, `--image-size 32`, `--style-size 32`, `--max-size 64`, `--batch-size 2`.
//! A command marked `[GPU]`, `[COCO]` or `[cluster]` (in its own trailing comment, or in a
//! comment line above it in the block, which then marks the rest of the block) is listed and
//! not run; the set-up and `cargo` lines are what CI already runs; the benchmark drivers are
//! checked with `bash -n`. A server (`--serve`, TensorBoard) is started on a free port, must
//! answer HTTP, and is stopped; `curl` lines talk to a server the test starts on the sandbox's
//! `checkpoints/`. The test fails when a command is renamed, a flag disappears or a file the
//! README names is missing.
mod common;

use common::free_port;
use common::server::Server;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Marks of commands that this machine cannot run.
const NOT_HERE: [&str; 3] = ["[GPU]", "[COCO]", "[cluster]"];

/// Flags whose values the test shrinks, and the value it gives them.
const BUDGETS: [(&str, &str); 5] = [
    ("--iterations", "2"),
    ("--image-size", "32"),
    ("--style-size", "32"),
    ("--max-size", "64"),
    ("--batch-size", "2"),
];

/// One command of the README: its first line number, its text (continuations joined) and
/// whether a mark keeps it from running here.
struct Cmd {
    line: usize,
    text: String,
    marked: Option<&'static str>,
}

/// The ```bash blocks of `readme`, as commands.
fn blocks(readme: &str) -> Vec<Vec<Cmd>> {
    let mut out = Vec::new();
    let mut lines = readme.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        if line.trim() != "```bash" {
            continue;
        }
        let mut block = Vec::new();
        let mut marked_rest = None;
        let mut pending: Option<Cmd> = None;
        for (i, line) in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            if let Some(cmd) = pending.as_mut() {
                cmd.text.push(' ');
                cmd.text.push_str(line.trim());
            } else if line.trim_start().starts_with('#') || line.trim().is_empty() {
                if let Some(mark) = mark_in(line) {
                    marked_rest = Some(mark);
                }
                continue;
            } else {
                pending = Some(Cmd {
                    line: i + 1,
                    text: line.trim().to_string(),
                    marked: marked_rest,
                });
            }
            let cmd = pending.as_mut().unwrap();
            if cmd.text.ends_with('\\') {
                cmd.text.pop();
                continue;
            }
            let mut cmd = pending.take().unwrap();
            cmd.marked = cmd.marked.or_else(|| mark_in(comment(&cmd.text)));
            block.push(cmd);
        }
        out.push(block);
    }
    out
}

/// The first mark of [`NOT_HERE`] in `text`.
fn mark_in(text: &str) -> Option<&'static str> {
    NOT_HERE.into_iter().find(|m| text.contains(m))
}

/// The trailing comment of a command (`""` if none).
fn comment(text: &str) -> &str {
    text.find(" #").map_or("", |i| &text[i..])
}

/// The command without its trailing comment.
fn code(text: &str) -> &str {
    text.find(" #").map_or(text, |i| &text[..i]).trim_end()
}

/// `code` with the budget flags' values shrunk (a list keeps its length), and for `train`
/// the [`ADDED`] budgets it does not name added.
fn shrink(code: &str) -> String {
    let mut words: Vec<String> = code.split_whitespace().map(str::to_string).collect();
    for (flag, small) in BUDGETS {
        if let Some(i) = words.iter().position(|w| w == flag) {
            if let Some(value) = words.get_mut(i + 1) {
                let n = value.split(',').count();
                *value = (0..n)
                    .map(|k| (small.parse::<u32>().unwrap() + 16 * k as u32).to_string())
                    .collect::<Vec<_>>()
                    .join(",");
            }
        } else if words.iter().any(|w| w.ends_with("release/train")) && ADDED.contains(&flag) {
            words.push(flag.to_string());
            words.push(small.to_string());
        }
    }
    words.join(" ")
}

/// The budgets added to a `train` command that does not name them.
const ADDED: [&str; 3] = ["--iterations", "--image-size", "--style-size"];

/// Lines of bash that run `code`, a server, on `port` until it answers HTTP, then stop it.
fn serve_briefly(code: &str, port: u16, log: &Path) -> String {
    format!(
        "{code} >{log} 2>&1 &\n\
         pid=$!; ok=0\n\
         for _ in $(seq 1 900); do\n\
           if curl -s -o /dev/null http://127.0.0.1:{port}/; then ok=1; break; fi\n\
           kill -0 $pid 2>/dev/null || break; sleep 0.1\n\
         done\n\
         kill $pid 2>/dev/null; wait $pid 2>/dev/null || true\n\
         [ $ok = 1 ] || {{ cat {log} >&2; false; }}\n",
        log = log.display()
    )
}

/// What the test makes of one command: bash to run, or why not.
enum Plan {
    Run(String),
    Skip(String),
}

/// How the test runs `cmd`, with `api` the address of its own server.
fn plan(cmd: &Cmd, api: &str, sandbox: &Path) -> Plan {
    if let Some(mark) = cmd.marked {
        return Plan::Skip(format!("marked {mark}"));
    }
    let code = code(&cmd.text);
    if code.starts_with("cargo ") || code == "bash scripts/setup.sh" {
        return Plan::Skip("what CI runs".into());
    }
    if let Some(script) = code
        .split_whitespace()
        .find(|w| w.starts_with("scripts/bench/"))
    {
        return Plan::Run(format!("bash -n {script}\n"));
    }
    let log = sandbox.join(format!("server-{}.log", cmd.line));
    if let Some(i) = code.find("--serve ") {
        let port = free_port();
        let rest = &code[i + "--serve ".len()..];
        let addr = rest.split_whitespace().next().unwrap_or("");
        let code = code.replacen(addr, &format!("127.0.0.1:{port}"), 1);
        return Plan::Run(serve_briefly(&code, port, &log));
    }
    if code.contains("tensorboard") {
        let port = free_port();
        let code = format!("{code} --host 127.0.0.1 --port {port}");
        return Plan::Run(serve_briefly(&code, port, &log));
    }
    let code = code
        .replace("127.0.0.1:8080", api)
        .replace("0.0.0.0:8080", api);
    Plan::Run(shrink(&code) + "\n")
}

/// `path` linked into `sandbox` under the same name.
fn link(root: &Path, sandbox: &Path, name: &str) {
    std::os::unix::fs::symlink(root.join(name), sandbox.join(name)).unwrap();
}

/// A folder that looks like the repository root after the set-up.
fn sandbox(root: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["target", "scripts", ".venv", "docs"] {
        link(root, dir.path(), name);
    }
    let copy = Command::new("cp")
        .arg("-r")
        .arg(root.join("datasets"))
        .arg(root.join("checkpoints"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copy.success(), "cannot copy datasets/ and checkpoints/");
    dir
}

#[test]
fn every_readme_command_runs_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    if !root.join("checkpoints/vgg16.safetensors").is_file()
        || !root.join("datasets/clips/pan.mp4").is_file()
    {
        panic!("run scripts/setup.sh first: the README's commands need its VGG16 and sample clip");
    }
    let sandbox = sandbox(&root);
    let dir = sandbox.path();
    let server = Server::start(&dir.join("checkpoints"), &[]);
    let mut ran = 0;
    let mut report = String::new();
    for block in blocks(&readme) {
        let mut script = String::from("set -euo pipefail\n");
        let mut lines = Vec::new();
        for cmd in &block {
            match plan(cmd, &server.addr, dir) {
                Plan::Skip(why) => {
                    let _ = writeln!(
                        report,
                        "README.md:{}: not run ({why}): {}",
                        cmd.line, cmd.text
                    );
                }
                Plan::Run(bash) => {
                    let _ = writeln!(script, "LINE={}", cmd.line);
                    script.push_str(&bash);
                    lines.push(cmd);
                    ran += 1;
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "trap 'echo \"failed at README.md:$LINE\" >&2' ERR\n{script}"
            ))
            .current_dir(dir)
            .env("SECRET", "readme-test")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "a README block failed ({}):\n{script}\n--- stderr (tail)\n{}",
            out.status,
            &stderr[stderr.len().saturating_sub(3000)..]
        );
        for cmd in lines {
            let _ = writeln!(report, "README.md:{}: ran: {}", cmd.line, cmd.text);
        }
    }
    eprintln!("{report}");
    assert!(
        ran >= 20,
        "only {ran} README commands found: did the parsing break?\n{report}"
    );
}

#[test]
fn shrink_keeps_list_lengths_and_adds_budgets_to_train() {
    let s = shrink("target/release/train --preview a.png --style-weight 1,2 --style-size 256,512");
    assert!(s.contains("--style-size 32,48"), "{s}");
    assert!(
        s.contains("--iterations 2") && s.contains("--image-size 32"),
        "{s}"
    );
    let s = shrink("target/release/infer x.jpg --max-size 1024");
    assert_eq!(s, "target/release/infer x.jpg --max-size 64");
}

#[test]
fn marks_apply_to_their_line_or_the_rest_of_the_block() {
    let readme = "```bash\na \\\n  --b 1   # [GPU]\nc\n# [COCO] below\nd\n```\n";
    let cmds = &blocks(readme)[0];
    let got: Vec<_> = cmds.iter().map(|c| (c.line, c.marked)).collect();
    assert_eq!(got, [(2, Some("[GPU]")), (4, None), (6, Some("[COCO]"))]);
    assert_eq!(code(&cmds[0].text), "a  --b 1");
}
