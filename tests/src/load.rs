//! Client load inside a namespace: several `dig` loops at once, until
//! told to stop, recording every result so a test can check that no client
//! ever hung.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::dig::{dig, Dig};
use crate::netns::Netns;

/// Running load; [`Load::stop`] returns every result.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: JoinSet<Vec<Dig>>,
}

impl Load {
    /// Start `workers` loops asking `name` A over UDP (every third worker
    /// over TCP).
    pub fn start(ns: Arc<Netns>, name: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for w in 0..workers {
            let (ns, stop, name) = (ns.clone(), stop.clone(), name.to_string());
            set.spawn(async move {
                let mut results = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    results.push(dig(&ns, &name, "A", w % 3 == 2, &[]).await);
                }
                results
            });
        }
        Load { stop, workers: set }
    }

    /// Stop and collect every result.
    pub async fn stop(mut self) -> Vec<Dig> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(r) = self.workers.join_next().await {
            all.extend(r.expect("load worker panicked"));
        }
        all
    }
}
