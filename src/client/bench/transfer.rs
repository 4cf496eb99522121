//! `put` and `get` modes: N parallel verified transfers of one file, each on its own logged-in
//! connection. The file is generated (or given), read once to warm the page cache, and the
//! server is left as it was afterwards (the bench's own uploads are removed).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::probe::{Before, Probe};
use super::report::{Mode, Report, Shape, Tally, report};
use super::{Target, TransferLoad, connect};
use crate::Result;
use crate::client::Client;
use crate::filecopy::Quiet;

/// Runs a `put` (`mode` [`Mode::Put`]) or `get` ([`Mode::Get`]) load against `server`.
pub(super) async fn run(
    server: &Target,
    load: &TransferLoad,
    mode: Mode,
    probe: Option<Probe>,
) -> Result<Report> {
    let download = mode == Mode::Get;
    let temp = match &load.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("sockit-bench-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("sockit-bench-").tempdir()?,
    };
    let (source, size) = match &load.file {
        Some(file) => (file.clone(), std::fs::metadata(file)?.len()),
        // Downloads of a file already on the server need no local source.
        None if download && load.remote.is_some() => (PathBuf::new(), 0),
        None => {
            let source = temp.path().join("source.bin");
            let (src, size) = (source.clone(), load.size);
            crate::filecopy::blocking(move || generate(&src, size)).await?;
            (source, size)
        }
    };
    let given = if download { load.remote.clone() } else { None };
    let remote = |i: usize| match &given {
        Some(name) => name.clone(),
        None => format!("sockit-bench-{}-{i}.bin", std::process::id()),
    };
    let mut size = size;
    if download {
        let mut client = login(server, load).await?;
        if load.remote.is_some() {
            size = client.stat(&remote(0)).await?.size;
        } else {
            // One upload, not measured; every download reads it.
            client.put(&source, &remote(0), false, &mut Quiet).await?;
        }
    }
    // Read the source once, so the measured part starts from the page cache (as nc's does).
    if !source.as_os_str().is_empty() {
        let src = source.clone();
        crate::filecopy::blocking(move || warm(&src)).await?;
    }
    let mut clients = Vec::with_capacity(load.parallel);
    for _ in 0..load.parallel {
        clients.push(login(server, load).await?);
    }
    let before = Before::now(probe);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let source = source.clone();
        let name = if download { remote(0) } else { remote(i) };
        let local = temp.path().join(format!("download-{i}.bin"));
        tasks.spawn(async move {
            let began = Instant::now();
            let done = if download {
                client.get(&name, &local, false, &mut Quiet).await
            } else {
                client.put(&source, &name, false, &mut Quiet).await
            };
            (began, done.map(|v| v.size))
        });
    }
    let mut total = Tally::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((began, Ok(got))) if got == size => total.record(began),
            Ok((_, Ok(got))) => total.fail(format!("transferred {got} of {size} bytes")),
            Ok((_, Err(e))) => total.fail(e),
            Err(e) => total.fail(e),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let shape = Shape {
        connections: load.parallel,
        body_bytes: size,
        pipeline: 1,
    };
    let report = report(mode, server, shape, total, seconds, before);
    // Leave the server as it was.
    if given.is_none()
        && let Ok(mut client) = login(server, load).await
    {
        let count = if download { 1 } else { load.parallel };
        for i in 0..count {
            let _ = client.rm(&remote(i), false).await;
        }
    }
    Ok(report)
}

async fn login(server: &Target, load: &TransferLoad) -> Result<Client> {
    let mut client = connect(server, 0).await?;
    client.login(&load.user, &load.password).await?;
    Ok(client)
}

/// Writes `size` bytes of a non-repeating pattern to `path`.
fn generate(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            // xorshift64: cheap bytes that no layer can compress or dedupe.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(block.len());
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// Reads a file once, to bring it into the page cache.
fn warm(path: &Path) -> Result<()> {
    std::io::copy(&mut std::fs::File::open(path)?, &mut std::io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_exactly_the_size_asked_in_blocks_that_do_not_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let size = (1 << 20) + 1000;
        generate(&path, size).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_ne!(bytes[..1000], bytes[1 << 20..]);
        generate(&path, 0).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
