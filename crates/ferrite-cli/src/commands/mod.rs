//! One module per subcommand.

pub mod bench;
pub mod embed;
pub mod info;
pub mod perplexity;
pub mod rag;
pub mod run;
pub mod serve;
pub mod tokens;

use anyhow::{Context, Result};
use ferrite_engine::LoadedModel;

use crate::ModelArgs;

/// Size the global thread pool (default: every available core); returns its size.
pub fn init_threads(threads: Option<usize>) -> Result<usize> {
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().context("starting the thread pool")?;
    Ok(threads)
}

/// Size the global thread pool and load the model, with a progress bar on a terminal.
pub fn load(args: &ModelArgs) -> Result<LoadedModel> {
    let threads = init_threads(args.threads)?;
    let pb = crate::progress::bytes("loading");
    let t = std::time::Instant::now();
    let lm = LoadedModel::open(&args.model, &mut |done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })
    .with_context(|| format!("loading {}", args.model.display()))?;
    pb.finish_and_clear();
    eprintln!(
        "ferrite: loaded {} ({}, {} layers) in {:.2} s, {} threads",
        args.model.display(),
        lm.model.config().arch,
        lm.model.config().n_layers,
        t.elapsed().as_secs_f64(),
        threads
    );
    Ok(lm)
}
