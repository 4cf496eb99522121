//! Durable writes that skip the page cache: a file that will be `fsync`ed when complete is
//! written with `O_DIRECT` where the file system allows it.
//!
//! A buffered write copies every byte into the page cache (faulting in fresh pages first),
//! and the final `fsync` then writes it all out again; measured on this project's VMs, a
//! plain buffered 1 GiB write ran at 400–530 MB/s where `O_DIRECT` with 1 MiB writes ran at
//! 970–1,200 MB/s (`dd`). So the bytes are gathered into 1 MiB blocks in memory aligned for
//! the device, and a disk thread of its own writes each block straight to the device while
//! the next one fills: the hashing and the disk overlap, as they did with the page cache.
//!
//! The parts `O_DIRECT` cannot take go through the page cache: the stretch before the
//! first block boundary (a resumed upload starts anywhere) and the last partial block. A
//! file system that refuses `O_DIRECT` (tmpfs, some FUSE ones), at the start or at the first
//! write, gets buffered writes throughout, as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rustix::fs::OFlags;

/// The alignment `O_DIRECT` asks of offsets, lengths and memory (the page size, which
/// covers every common logical block size).
const ALIGN: usize = 4096;

/// Bytes per direct write.
const BLOCK: usize = 1 << 20;

/// Blocks in memory per file: one filling, one being written, one waiting.
const BLOCKS: usize = 3;

/// A block of memory aligned for `O_DIRECT`: a plain vector, used from its first aligned
/// byte on (safe code cannot ask the allocator for the alignment).
struct Block {
    memory: Vec<u8>,
    start: usize,
    len: usize,
}

impl Block {
    fn new() -> Block {
        let memory = vec![0u8; BLOCK + ALIGN];
        let start = memory.as_ptr().align_offset(ALIGN);
        Block {
            memory,
            start,
            len: 0,
        }
    }

    fn room(&self) -> usize {
        BLOCK - self.len
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = self.start + self.len;
        self.memory[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn bytes(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.len]
    }
}

/// A block to write at a file offset.
struct Job {
    block: Block,
    at: u64,
}

/// Writes a file from its current length on, directly to the device where it can.
pub(super) struct DirectWriter {
    file: File,
    /// Where the next byte goes.
    pos: u64,
    /// The block being filled, once the writes are aligned; `None` while buffered.
    filling: Option<Block>,
    disk: Option<Disk>,
    /// The file refused `O_DIRECT`: buffered writes throughout.
    refused: bool,
}

/// The disk thread, and the channels that carry blocks to it and back.
struct Disk {
    full: mpsc::SyncSender<Job>,
    empty: mpsc::Receiver<Block>,
    thread: JoinHandle<io::Result<()>>,
}

impl DirectWriter {
    /// A writer that appends to `file` from byte `pos` on.
    pub(super) fn new(file: File, pos: u64) -> DirectWriter {
        DirectWriter {
            file,
            pos,
            filling: None,
            disk: None,
            refused: false,
        }
    }

    /// Whether the writes go to the device directly (once past the first block boundary,
    /// and unless the file system refused).
    pub(super) fn is_direct(&self) -> bool {
        self.disk.is_some()
    }

    /// Writes `bytes` at the end of what was written so far.
    ///
    /// # Errors
    /// The file system's write errors (from the disk thread, at the latest by
    /// [`DirectWriter::finish`]).
    pub(super) fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.disk.is_none() && !self.refused {
            // Buffered up to the first block boundary, then direct if the file allows.
            let to_boundary = (ALIGN - (self.pos % ALIGN as u64) as usize) % ALIGN;
            let head = to_boundary.min(bytes.len());
            self.buffered(&bytes[..head])?;
            bytes = &bytes[head..];
            if bytes.is_empty() {
                return Ok(());
            }
            self.start_direct()?;
        }
        let Some(mut block) = self.filling.take() else {
            return self.buffered(bytes);
        };
        while !bytes.is_empty() {
            let n = block.room().min(bytes.len());
            block.push(&bytes[..n]);
            bytes = &bytes[n..];
            if block.room() == 0 {
                block = self.send(block)?;
            }
        }
        self.filling = Some(block);
        Ok(())
    }

    /// Writes what is left and waits for the disk thread; the file is then complete up to
    /// the last byte written (not yet `fsync`ed).
    ///
    /// # Errors
    /// The first write error of either thread.
    pub(super) fn finish(mut self) -> io::Result<()> {
        let Some(disk) = self.disk.take() else {
            return Ok(());
        };
        // The aligned part of the last block goes direct; the rest, through the page cache.
        let mut tail = Vec::new();
        if let Some(mut block) = self.filling.take() {
            let whole = block.len - block.len % ALIGN;
            tail.extend_from_slice(&block.bytes()[whole..]);
            block.len = whole;
            if whole > 0 {
                let at = self.pos;
                self.pos += whole as u64;
                let _ = disk.full.send(Job { block, at });
            }
        }
        drop(disk.full);
        let written = disk
            .thread
            .join()
            .map_err(|_| io::Error::other("the disk thread failed"))?;
        written?;
        set_direct(&self.file, false)?;
        self.buffered(&tail)
    }

    fn buffered(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.pos)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Turns `O_DIRECT` on and starts the disk thread; a file that refuses it stays
    /// buffered (`filling` stays `None`).
    fn start_direct(&mut self) -> io::Result<()> {
        if set_direct(&self.file, true).is_err() {
            self.refused = true;
            return Ok(());
        }
        let file = self.file.try_clone()?;
        let (full, jobs) = mpsc::sync_channel::<Job>(BLOCKS - 1);
        let (done, empty) = mpsc::channel::<Block>();
        for _ in 0..BLOCKS - 1 {
            let _ = done.send(Block::new());
        }
        let thread = std::thread::Builder::new()
            .name("sockit-disk".into())
            .spawn(move || -> io::Result<()> {
                let mut direct = true;
                for Job { mut block, at } in jobs {
                    match file.write_all_at(block.bytes(), at) {
                        // Refused at the first write after all: buffered from here on.
                        Err(e) if direct && e.raw_os_error() == Some(libc_einval()) => {
                            direct = false;
                            set_direct(&file, false)?;
                            file.write_all_at(block.bytes(), at)?;
                        }
                        other => other?,
                    }
                    block.len = 0;
                    let _ = done.send(block);
                }
                Ok(())
            })?;
        self.filling = Some(Block::new());
        self.disk = Some(Disk {
            full,
            empty,
            thread,
        });
        Ok(())
    }

    /// Hands a full block to the disk thread; returns an empty one to fill next.
    fn send(&mut self, block: Block) -> io::Result<Block> {
        let disk = self
            .disk
            .as_ref()
            .expect("direct writes have a disk thread");
        let at = self.pos;
        self.pos += block.len as u64;
        if disk.full.send(Job { block, at }).is_err() {
            // The disk thread stopped on an error; `finish` reports it.
            return Err(self.disk_error());
        }
        disk.empty.recv().map_err(|_| self.disk_error())
    }

    /// The disk thread's error, once it stopped.
    fn disk_error(&mut self) -> io::Error {
        let Some(disk) = self.disk.take() else {
            return io::Error::other("the disk thread stopped");
        };
        drop(disk.full);
        match disk.thread.join() {
            Ok(Err(e)) => e,
            _ => io::Error::other("the disk thread stopped"),
        }
    }
}

/// EINVAL: what a file system that cannot do `O_DIRECT` answers a direct write.
fn libc_einval() -> i32 {
    rustix::io::Errno::INVAL.raw_os_error()
}

/// Turns `O_DIRECT` on or off for the open file (and every handle cloned from it).
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn every_byte_lands_in_place_whatever_the_start_and_the_pieces() {
        // A file system that takes O_DIRECT, and (where there is one) tmpfs, which does not.
        let disk = tempfile::tempdir().unwrap();
        let shm = tempfile::tempdir_in("/dev/shm").ok();
        for dir in std::iter::once(&disk).chain(shm.as_ref()) {
            written_in_place(dir.path());
        }
    }

    fn written_in_place(dir: &std::path::Path) {
        for (start, pieces) in [
            (0usize, vec![BLOCK * 2 + 5]),
            (4095, vec![1, 4096, BLOCK, 77]),
            (12_345, vec![300_000; 9]),
            (0, vec![ALIGN * 3]),
            (100, vec![10]),
        ] {
            let path = dir.join(format!("f{start}"));
            let head = pattern(start, 7);
            std::fs::write(&path, &head).unwrap();
            let file = File::options().read(true).write(true).open(&path).unwrap();
            let mut writer = DirectWriter::new(file, start as u64);
            let mut expected = head;
            for (i, n) in pieces.iter().enumerate() {
                let piece = pattern(*n, i as u8);
                writer.write(&piece).unwrap();
                expected.extend_from_slice(&piece);
            }
            writer.finish().unwrap();
            assert!(
                std::fs::read(&path).unwrap() == expected,
                "start {start}, {pieces:?}"
            );
        }
    }
}
