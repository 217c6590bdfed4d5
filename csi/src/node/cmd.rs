//! Running the standard tools: one command line, built by a pure function (so tests can check
//! exactly what would run), run with `tokio::process` and every failure captured.

use std::fmt;
use std::process::{Output, Stdio};

use tokio::process::Command;

use super::{NodeError, Result};

/// The most stderr (or stdout) kept in a [`NodeError::CommandFailed`].
pub(crate) const MAX_STDERR: usize = 4096;

/// A program and its arguments, not yet run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    program: String,
    args: Vec<String>,
}

impl CommandLine {
    pub fn new(program: impl Into<String>) -> Self {
        CommandLine { program: program.into(), args: Vec::new() }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Runs it (stdin from /dev/null, `LC_ALL=C` so messages are stable) and returns its
    /// standard output; a non-zero exit is [`NodeError::CommandFailed`].
    pub async fn run(&self) -> Result<String> {
        let out = self.output().await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failed(&out))
        }
    }

    /// Runs it and returns the raw output whatever the exit status, for callers that give
    /// some non-zero exits a meaning (`blkid` exits 2 for "nothing found").
    pub(crate) async fn output(&self) -> Result<Output> {
        tracing::debug!(command = %self, "running");
        Command::new(&self.program)
            .args(&self.args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| NodeError::CommandUnavailable { program: self.program.clone(), source })
    }

    /// The error for an unsuccessful `out`.
    pub(crate) fn failed(&self, out: &Output) -> NodeError {
        let text = if out.stderr.iter().all(u8::is_ascii_whitespace) { &out.stdout } else { &out.stderr };
        let mut stderr = String::from_utf8_lossy(text).trim().to_owned();
        if stderr.len() > MAX_STDERR {
            let mut cut = MAX_STDERR;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
            stderr.push_str(" …");
        }
        NodeError::CommandFailed { program: self.program.clone(), args: self.args.clone(), status: out.status, stderr }
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_carry_program_args_status_and_stderr() {
        let cmd = CommandLine::new("sh").arg("-c").arg("echo oops >&2; exit 3");
        match cmd.run().await {
            Err(e @ NodeError::CommandFailed { .. }) => {
                assert_eq!(e.exit_code(), Some(3));
                let NodeError::CommandFailed { program, args, stderr, .. } = &e else { unreachable!() };
                assert_eq!((program.as_str(), args.len(), stderr.as_str()), ("sh", 2, "oops"));
                assert!(e.to_string().contains("oops"), "{e}");
            }
            other => panic!("want CommandFailed, got {other:?}"),
        }
        let out = CommandLine::new("sh").arg("-c").arg("echo hi").run().await;
        assert_eq!(out.ok().as_deref(), Some("hi\n"));
        match CommandLine::new("/nonexistent/tool").run().await {
            Err(NodeError::CommandUnavailable { program, .. }) => assert_eq!(program, "/nonexistent/tool"),
            other => panic!("want CommandUnavailable, got {other:?}"),
        }
    }

    #[test]
    fn long_stderr_is_cut() {
        use std::os::unix::process::ExitStatusExt;
        let out = Output {
            status: std::process::ExitStatus::from_raw(1 << 8),
            stdout: Vec::new(),
            stderr: "é".repeat(MAX_STDERR).into_bytes(),
        };
        let NodeError::CommandFailed { stderr, .. } = CommandLine::new("x").failed(&out) else {
            panic!("want CommandFailed")
        };
        assert!(stderr.len() <= MAX_STDERR + 4);
    }
}
