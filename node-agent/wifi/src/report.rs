//! The agent's mesh report: one JSON object per line on stdout, each with `t_ms` (since start),
//! `node` and `event`. The controller client forwards the same objects.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;

/// Writes one JSON object per line to stdout.
pub struct Reporter {
    node: String,
    start: Instant,
}

impl Reporter {
    pub fn new(node: String) -> Self {
        Self {
            node,
            start: Instant::now(),
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn line(&self, event: &str, data: &impl Serialize) {
        #[derive(Serialize)]
        struct Line<'a, T: Serialize> {
            t_ms: u64,
            node: &'a str,
            event: &'a str,
            #[serde(flatten)]
            data: &'a T,
        }
        let line = Line {
            t_ms: self.elapsed_ms(),
            node: &self.node,
            event,
            data,
        };
        if let Ok(mut s) = serde_json::to_string(&line) {
            s.push('\n');
            let mut out = std::io::stdout().lock();
            // A closed stdout (the reader went away) must not stop the mesh.
            let _ = out.write_all(s.as_bytes());
            let _ = out.flush();
        }
    }
}
