//! The durable command log and snapshots (`docs/format/master-log.md`), and [`DurableState`]:
//! the state machine behind them. A command is validated, appended and fsynced, and only then
//! applied; recovery loads the snapshot and replays the log, cutting a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use net::codec::{Reader, Wire};

use crate::state::{ClusterState, Command, CommandError};

const LOG_MAGIC: &[u8; 8] = b"TKVMLOG1";
const SNAP_MAGIC: &[u8; 8] = b"TKVMSNP1";
/// The version this build writes (log header and snapshot): 2 adds capacity requests
/// (commands 10 and 11, and the snapshot's list), 3 the `maxmemory` override (command 12 and
/// the snapshot's `max_memory`). Version 1 and 2 files are still read.
const FORMAT_VERSION: u32 = crate::state::SNAPSHOT_VERSION;
/// Versions this build reads.
const READABLE_VERSIONS: std::ops::RangeInclusive<u32> = 1..=FORMAT_VERSION;
const LOG_HEADER_BYTES: usize = 24;
const RECORD_HEADER_BYTES: usize = 8;
/// The largest record body (`index` + command).
pub const MAX_RECORD_BYTES: usize = 16 << 20;
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// Why the log or snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The OS said no.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The bytes on disk are wrong.
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        /// The file.
        file: PathBuf,
        /// Byte offset of the bad record or header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or fsync failed; reopen to continue.
    #[error("log poisoned by an earlier I/O failure")]
    Poisoned,
}

/// Why a proposal did not take effect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// The command is invalid against the current state; nothing was written.
    #[error(transparent)]
    Rejected(#[from] CommandError),
    /// The log could not be written; the command may or may not survive a restart.
    #[error(transparent)]
    Log(#[from] LogError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> LogError {
    let context = context.into();
    move |source| LogError::Io { context, source }
}

fn corruption(file: &Path, offset: usize, reason: impl Into<String>) -> LogError {
    LogError::Corruption {
        file: file.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync dir {}", dir.display())))
}

fn log_name(first_index: u64) -> String {
    format!("log-{first_index:020}")
}

/// What recovery found, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Applied index of the snapshot loaded (0: none).
    pub snapshot_index: u64,
    /// Records replayed from the log.
    pub replayed: u64,
    /// Bytes cut from the tail of the last log file.
    pub torn_bytes: u64,
}

/// The state machine, its log file and its snapshot.
#[derive(Debug)]
pub struct DurableState {
    dir: PathBuf,
    state: ClusterState,
    file: File,
    file_path: PathBuf,
    log_files: Vec<(u64, PathBuf)>,
    snapshot_index: u64,
    poisoned: bool,
    buf: BytesMut,
}

impl DurableState {
    /// Opens (creating if needed) the data directory and recovers the state.
    pub fn open(dir: &Path) -> Result<(Self, RecoveryReport), LogError> {
        fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        let tmp = dir.join(SNAPSHOT_TMP);
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(io_err("remove snapshot.tmp"))?;
        }
        let mut report = RecoveryReport::default();
        let mut state: ClusterState = read_snapshot(&dir.join(SNAPSHOT))?.unwrap_or_default();
        report.snapshot_index = state.applied_index();
        let log_files = list_logs(dir)?;
        let count = log_files.len();
        for (i, (_, path)) in log_files.iter().enumerate() {
            let last = i + 1 == count;
            let (replayed, torn) = replay(path, last, &mut state)?;
            report.replayed += replayed;
            report.torn_bytes += torn;
        }
        let mut me = match log_files.last() {
            Some((_, path)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(io_err(format!("open {}", path.display())))?;
                Self {
                    dir: dir.to_path_buf(),
                    snapshot_index: report.snapshot_index,
                    state,
                    file,
                    file_path: path.clone(),
                    log_files,
                    poisoned: false,
                    buf: BytesMut::new(),
                }
            }
            None => {
                let first = state.applied_index() + 1;
                let (file, path) = create_log(dir, first)?;
                Self {
                    dir: dir.to_path_buf(),
                    snapshot_index: report.snapshot_index,
                    state,
                    file,
                    file_path: path.clone(),
                    log_files: vec![(first, path)],
                    poisoned: false,
                    buf: BytesMut::new(),
                }
            }
        };
        me.state.verify();
        if report.torn_bytes > 0 {
            tracing::warn!(
                dir = %dir.display(),
                torn_bytes = report.torn_bytes,
                "cut a torn tail off the master log"
            );
        }
        me.buf.reserve(4096);
        Ok((me, report))
    }

    /// The current state.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Commands applied since the last snapshot.
    pub fn commands_since_snapshot(&self) -> u64 {
        self.state.applied_index() - self.snapshot_index
    }

    /// Validates `cmd`, appends it, fsyncs, and applies it. On `Ok` the change is durable.
    pub fn propose(&mut self, cmd: &Command) -> Result<(), ProposeError> {
        if self.poisoned {
            return Err(LogError::Poisoned.into());
        }
        self.state.check(cmd)?;
        let index = self.state.applied_index() + 1;
        self.append(index, cmd)?;
        self.state
            .apply(index, cmd)
            .expect("checked just above against the same state");
        Ok(())
    }

    fn append(&mut self, index: u64, cmd: &Command) -> Result<(), LogError> {
        self.buf.clear();
        encode_record(&mut self.buf, index, cmd);
        assert!(self.buf.len() - RECORD_HEADER_BYTES <= MAX_RECORD_BYTES);
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            self.poisoned = true;
            tracing::error!(file = %self.file_path.display(), "master log write failed: {e}");
            return Err(io_err(format!("append to {}", self.file_path.display()))(e));
        }
        Ok(())
    }

    /// Writes a snapshot of the current state, starts a new log file and deletes the old ones.
    pub fn snapshot(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let result = self.snapshot_inner();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn snapshot_inner(&mut self) -> Result<(), LogError> {
        let index = self.state.applied_index();
        let mut body = BytesMut::new();
        self.state.encode_snapshot(&mut body);
        let mut out = BytesMut::with_capacity(body.len() + 32);
        out.put_slice(SNAP_MAGIC);
        out.put_u32_le(FORMAT_VERSION);
        out.put_u64_le(index);
        out.put_u64_le(body.len() as u64);
        out.put_slice(&body);
        let crc = crc32c::crc32c(&out);
        out.put_u32_le(crc);
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut f = File::create(&tmp).map_err(io_err("create snapshot.tmp"))?;
        f.write_all(&out)
            .and_then(|()| f.sync_all())
            .map_err(io_err("write snapshot.tmp"))?;
        drop(f);
        fs::rename(&tmp, self.dir.join(SNAPSHOT)).map_err(io_err("rename snapshot"))?;
        sync_dir(&self.dir)?;
        self.snapshot_index = index;
        let first = index + 1;
        if self.log_files.last().map(|(f, _)| *f) != Some(first) {
            let (file, path) = create_log(&self.dir, first)?;
            self.file = file;
            self.file_path = path.clone();
            self.log_files.push((first, path));
        }
        while self.log_files.len() > 1 {
            let (_, old) = self.log_files.remove(0);
            fs::remove_file(&old).map_err(io_err(format!("remove {}", old.display())))?;
        }
        sync_dir(&self.dir)?;
        tracing::info!(index, bytes = out.len(), "master snapshot written");
        Ok(())
    }
}

fn encode_record(buf: &mut BytesMut, index: u64, cmd: &Command) {
    let start = buf.len();
    buf.put_u32_le(0);
    buf.put_u32_le(0);
    buf.put_u64_le(index);
    cmd.encode(buf);
    let len = (buf.len() - start - RECORD_HEADER_BYTES) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32c::crc32c(&len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &buf[start + RECORD_HEADER_BYTES..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn create_log(dir: &Path, first_index: u64) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(log_name(first_index));
    let mut header = BytesMut::with_capacity(LOG_HEADER_BYTES);
    header.put_slice(LOG_MAGIC);
    header.put_u32_le(FORMAT_VERSION);
    header.put_u64_le(first_index);
    let crc = crc32c::crc32c(&header);
    header.put_u32_le(crc);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("create {}", path.display())))?;
    file.write_all(&header)
        .and_then(|()| file.sync_all())
        .map_err(io_err(format!("write {}", path.display())))?;
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(format!("open {}", path.display())))?;
    Ok((file, path))
}

fn list_logs(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))? {
        let entry = entry.map_err(io_err("list data dir"))?;
        let name = entry.file_name();
        let Some(num) = name.to_str().and_then(|n| n.strip_prefix("log-")) else {
            continue;
        };
        let Ok(first) = num.parse::<u64>() else {
            continue;
        };
        out.push((first, entry.path()));
    }
    out.sort();
    Ok(out)
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

fn read_snapshot(path: &Path) -> Result<Option<ClusterState>, LogError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read snapshot")(e)),
    };
    let bad = |reason: &str| corruption(path, 0, reason);
    if data.len() < 32 || &data[..8] != SNAP_MAGIC {
        return Err(bad("bad snapshot magic or size"));
    }
    let crc_at = data.len() - 4;
    let stored = le_u32(&data, crc_at).ok_or_else(|| bad("short snapshot"))?;
    if crc32c::crc32c(&data[..crc_at]) != stored {
        return Err(bad("snapshot checksum mismatch"));
    }
    let version = le_u32(&data, 8).ok_or_else(|| bad("short snapshot"))?;
    if !READABLE_VERSIONS.contains(&version) {
        return Err(bad("unknown snapshot version"));
    }
    let index = le_u64(&data, 12).ok_or_else(|| bad("short snapshot"))?;
    let len = le_u64(&data, 20).ok_or_else(|| bad("short snapshot"))?;
    if len != (crc_at - 28) as u64 {
        return Err(bad("snapshot length mismatch"));
    }
    let mut r = Reader::new(Bytes::copy_from_slice(&data[28..crc_at]));
    let state = ClusterState::decode_snapshot_version(version, index, &mut r)
        .and_then(|s| r.finish().map(|()| s))
        .map_err(|e| bad(&format!("snapshot state: {e}")))?;
    Ok(Some(state))
}

/// Replays one log file into `state`; returns (records applied, torn bytes cut).
fn replay(path: &Path, last: bool, state: &mut ClusterState) -> Result<(u64, u64), LogError> {
    let data = fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    let header_ok = data.len() >= LOG_HEADER_BYTES
        && &data[..8] == LOG_MAGIC
        && le_u32(&data, 8).is_some_and(|v| READABLE_VERSIONS.contains(&v))
        && le_u32(&data, 20) == Some(crc32c::crc32c(&data[..20]));
    if !header_ok {
        if last && data.len() <= LOG_HEADER_BYTES {
            // A crash while the file was being created: it holds no record.
            rewrite_header(path, state.applied_index() + 1)?;
            return Ok((0, data.len() as u64));
        }
        return Err(corruption(path, 0, "bad log header"));
    }
    let mut at = LOG_HEADER_BYTES;
    let mut applied = 0;
    while at < data.len() {
        match parse_record(&data, at) {
            Ok((index, body, next)) => {
                if index <= state.applied_index() {
                    at = next;
                    continue;
                }
                if index != state.applied_index() + 1 {
                    return Err(corruption(
                        path,
                        at,
                        format!("index {index} does not follow {}", state.applied_index()),
                    ));
                }
                let mut r = Reader::new(Bytes::copy_from_slice(body));
                let cmd = Command::decode(&mut r)
                    .and_then(|c| r.finish().map(|()| c))
                    .map_err(|e| corruption(path, at, format!("command: {e}")))?;
                state
                    .apply(index, &cmd)
                    .map_err(|e| corruption(path, at, format!("command does not apply: {e}")))?;
                applied += 1;
                at = next;
            }
            Err(torn_ok) => {
                if last && torn_ok {
                    let cut = (data.len() - at) as u64;
                    truncate(path, at as u64)?;
                    return Ok((applied, cut));
                }
                return Err(corruption(path, at, "bad record"));
            }
        }
    }
    Ok((applied, 0))
}

/// Parses the record at `at`: `Ok((index, command bytes, next offset))`, or `Err(torn)` where
/// `torn` says whether the damage looks like an interrupted append (nothing valid after it).
fn parse_record(data: &[u8], at: usize) -> Result<(u64, &[u8], usize), bool> {
    let (Some(len), Some(crc)) = (le_u32(data, at), le_u32(data, at + 4)) else {
        return Err(true);
    };
    let len = len as usize;
    let body_at = at + RECORD_HEADER_BYTES;
    let Some(body) = data.get(body_at..body_at + len) else {
        return Err(true);
    };
    let rest_is_zero = || data[body_at + len..].iter().all(|&b| b == 0);
    if !(8..=MAX_RECORD_BYTES).contains(&len) {
        return Err(data[at..].iter().all(|&b| b == 0));
    }
    let actual = crc32c::crc32c_append(crc32c::crc32c(&(len as u32).to_le_bytes()), body);
    if actual != crc {
        return Err(rest_is_zero());
    }
    let index = le_u64(body, 0).ok_or(true)?;
    Ok((index, &body[8..], body_at + len))
}

fn truncate(path: &Path, len: u64) -> Result<(), LogError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))?;
    f.set_len(len)
        .and_then(|()| f.sync_all())
        .map_err(io_err(format!("truncate {}", path.display())))
}

fn rewrite_header(path: &Path, first_index: u64) -> Result<(), LogError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::remove_file(path).map_err(io_err(format!("remove {}", path.display())))?;
    create_log(dir, first_index).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ClusterConfig;
    use net::ClusterId;

    fn init() -> Command {
        Command::Init {
            cluster_id: ClusterId(5),
            config: ClusterConfig::default(),
        }
    }

    fn only_log(dir: &Path) -> PathBuf {
        list_logs(dir).unwrap().pop().unwrap().1
    }

    #[test]
    fn reopened_log_replays_every_acknowledged_command() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        d.propose(&init()).unwrap();
        for end in 1..=50 {
            d.propose(&Command::ReserveIds { end: end * 10 }).unwrap();
        }
        drop(d);
        let (d, report) = DurableState::open(dir.path()).unwrap();
        assert_eq!(report.replayed, 51);
        assert_eq!(d.state().id_end(), 500);
        assert_eq!(d.state().cluster_id(), ClusterId(5));
    }

    #[test]
    fn torn_tail_is_cut_and_the_log_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        d.propose(&init()).unwrap();
        d.propose(&Command::ReserveIds { end: 10 }).unwrap();
        drop(d);
        let path = only_log(dir.path());
        let full = fs::read(&path).unwrap();
        for cut in 1..20 {
            fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (mut d, report) = DurableState::open(dir.path()).unwrap();
            assert!(report.torn_bytes > 0);
            assert_eq!(d.state().id_end(), 0, "the torn record is gone");
            d.propose(&Command::ReserveIds { end: 20 }).unwrap();
            drop(d);
            let (d, _) = DurableState::open(dir.path()).unwrap();
            assert_eq!(d.state().id_end(), 20);
        }
    }

    #[test]
    fn corrupt_record_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        d.propose(&init()).unwrap();
        d.propose(&Command::ReserveIds { end: 10 }).unwrap();
        d.propose(&Command::ReserveIds { end: 20 }).unwrap();
        drop(d);
        let path = only_log(dir.path());
        let mut data = fs::read(&path).unwrap();
        data[LOG_HEADER_BYTES + 12] ^= 0x40;
        fs::write(&path, &data).unwrap();
        let err = DurableState::open(dir.path()).unwrap_err();
        assert!(matches!(err, LogError::Corruption { .. }), "{err}");
    }

    #[test]
    fn snapshot_then_more_commands_recover_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        d.propose(&init()).unwrap();
        d.propose(&Command::ReserveIds { end: 10 }).unwrap();
        d.snapshot().unwrap();
        d.propose(&Command::ReserveIds { end: 30 }).unwrap();
        let expected = d.state().clone();
        drop(d);
        assert_eq!(list_logs(dir.path()).unwrap().len(), 1);
        let (d, report) = DurableState::open(dir.path()).unwrap();
        assert_eq!(report.snapshot_index, 2);
        assert_eq!(report.replayed, 1);
        assert_eq!(d.state(), &expected);
    }

    #[test]
    fn log_file_torn_while_being_created_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        d.propose(&init()).unwrap();
        d.snapshot().unwrap();
        drop(d);
        let path = only_log(dir.path());
        fs::write(&path, &LOG_MAGIC[..5]).unwrap();
        let (mut d, report) = DurableState::open(dir.path()).unwrap();
        assert_eq!(report.torn_bytes, 5);
        d.propose(&Command::ReserveIds { end: 7 }).unwrap();
        drop(d);
        let (d, _) = DurableState::open(dir.path()).unwrap();
        assert_eq!(d.state().id_end(), 7);
    }

    #[test]
    fn corrupt_snapshot_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        d.propose(&init()).unwrap();
        d.snapshot().unwrap();
        drop(d);
        let path = dir.path().join(SNAPSHOT);
        let mut data = fs::read(&path).unwrap();
        data[30] ^= 1;
        fs::write(&path, &data).unwrap();
        assert!(matches!(
            DurableState::open(dir.path()),
            Err(LogError::Corruption { .. })
        ));
    }

    #[test]
    fn rejected_command_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        let before = fs::metadata(only_log(dir.path())).unwrap().len();
        assert!(matches!(
            d.propose(&Command::ReserveIds { end: 1 }),
            Err(ProposeError::Rejected(CommandError::NotInitialized))
        ));
        assert_eq!(fs::metadata(only_log(dir.path())).unwrap().len(), before);
    }
}
