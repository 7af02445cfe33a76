//! The generator: BPF_PROG_TEST_RUN live frames running `bench_tx` on the sender ends,
//! one thread per core.

use super::*;

/// Frames per BPF_PROG_TEST_RUN call: a few tens of milliseconds, so a stop is quick.
pub(super) const CHUNK: u32 = 1 << 16;

/// How the generator sends.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// The template frame.
    pub frame: Vec<u8>,
    /// Flows `bench_tx` spreads the frames over (ignored with `spoof_bits`).
    pub flows: u32,
    /// When not 0, `bench_tx` gives every frame a source address whose low `spoof_bits`
    /// bits are random (the spoofed-source flood).
    pub spoof_bits: u32,
    /// Generator threads, each on a core of its own.
    pub threads: usize,
    /// Frames per live-frames batch (1..=256).
    pub batch: u32,
}

/// Generator threads running until dropped.
pub struct Generator {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) sent: Arc<AtomicU64>,
    pub(super) threads: Vec<std::thread::JoinHandle<Result<()>>>,
}

impl Generator {
    /// Starts `traffic.threads` generators in `netns`, thread `t` pinned to `cpus[t]`,
    /// each running its own `bench_tx` on the sender end of `pair`.
    pub fn start(netns: &Netns, pair: &Pair, pins: &PinDir, traffic: &Traffic, cpus: &[usize]) -> Result<Generator> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut generator = Generator { stop: stop.clone(), sent: sent.clone(), threads: Vec::new() };
        let ns_path = format!("/run/netns/{}", netns.name());
        for t in 0..traffic.threads {
            // Loaded here, one at a time: they share the pin directory.
            let program = Reference::generator(pins, traffic.flows, traffic.spoof_bits)?;
            let (stop, sent, frame) = (stop.clone(), sent.clone(), traffic.frame.clone());
            let (ns_path, cpu, ifindex, batch) =
                (ns_path.clone(), cpus[t % cpus.len()], pair.peer_ifindex, traffic.batch);
            let queue = (t % pair.queues) as u32;
            let handle = std::thread::Builder::new()
                .name(format!("bench-gen-{t}"))
                .spawn(move || -> Result<()> {
                    enter_netns(&ns_path)?;
                    set_affinity(0, cpu)?;
                    favour(0)?;
                    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index.
                    let mut ctx = [0u8; 24];
                    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
                    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
                    ctx[16..20].copy_from_slice(&queue.to_ne_bytes());
                    while !stop.load(Ordering::Relaxed) {
                        let mut opts = TestRunOptions::new();
                        opts.data_in = Some(&frame);
                        opts.ctx_in = Some(&ctx);
                        opts.repeat = CHUNK;
                        opts.attrs = TestRunAttrs::new().xdp_live_frames(batch);
                        match program.program().test_run(opts) {
                            Ok(_) => {
                                sent.fetch_add(u64::from(CHUNK), Ordering::Relaxed);
                            }
                            // The kernel stops a run early when a signal is pending; go on.
                            Err(e) if interrupted(&e) => {}
                            Err(e) => return Err(e).context("live-frames test run of bench_tx"),
                        }
                    }
                    Ok(())
                })
                .context("starting a generator thread")?;
            generator.threads.push(handle);
        }
        Ok(generator)
    }

    /// Frames sent so far (in whole chunks).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops and joins the threads; the first error of any of them.
    pub fn stop(mut self) -> Result<()> {
        self.stop_and_join()
    }

    pub(super) fn stop_and_join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for handle in self.threads.drain(..) {
            let r = handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a generator thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Whether a thread has ended (with an error: they only end when stopped).
    pub fn failed(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Whether a test run failed with EINTR.
pub(super) fn interrupted(e: &aya::programs::ProgramError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::Interrupted;
        }
        source = err.source();
    }
    false
}
