//! `CONFIG REWRITE`: the settings `CONFIG SET` changed that the proxy's TOML file holds —
//! `requirepass`, `client-query-buffer-limit` and `timeout` — written back into the file the
//! proxy was started from (`tierkv proxy --config`), as Redis rewrites its `redis.conf`: a
//! key's line is replaced where it is (comments and every other line kept), a key the file
//! does not have is added at the end of its top-level keys, and an unset `requirepass` loses
//! its line. The new text is written to a temporary file, synced and renamed over the old
//! one, so a crash leaves either file whole.
//!
//! The other settings `CONFIG SET` changes (`notify-keyspace-events`, `slowlog-*`,
//! `latency-monitor-threshold`, `busy-reply-threshold`, `tracking-table-max-keys`, the
//! encoding thresholds) have no key in the proxy's file and last until it restarts;
//! `maxmemory` is the cluster's, durable in the master.

use std::io::Write;
use std::path::Path;

/// A key of the file and its new value (`None`: the key's line is removed).
pub type Setting = (&'static str, Option<String>);

/// Rewrites `path` with `settings`.
pub fn rewrite(path: &Path, settings: &[Setting]) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let out = rewritten(&text, settings);
    let tmp = path.with_extension("rewrite.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `text` with each of `settings` replaced, added or removed.
pub fn rewritten(text: &str, settings: &[Setting]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Top-level keys end at the first table header.
    let mut top_end = lines
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(lines.len());
    for (key, value) in settings {
        let at = lines[..top_end].iter().position(|l| key_of(l) == Some(key));
        match (at, value) {
            (Some(i), Some(v)) => lines[i] = format!("{key} = {v}"),
            (Some(i), None) => {
                lines.remove(i);
                top_end -= 1;
            }
            (None, Some(v)) => {
                lines.insert(top_end, format!("{key} = {v}"));
                top_end += 1;
            }
            (None, None) => {}
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The key an uncommented `key = value` line sets.
fn key_of(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && !k.starts_with('#')).then_some(k.trim_matches('"'))
}

/// `s` as a TOML basic string.
pub fn toml_string(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# the proxy\nlisten = \"127.0.0.1:6379\"\n# requirepass = \"x\"\ntimeout = 0\n\n[mesh]\ntimeout = 9\n";

    #[test]
    fn a_key_is_replaced_in_place_added_before_the_tables_or_removed() {
        let out = rewritten(
            FILE,
            &[
                ("timeout", Some("30".into())),
                ("requirepass", Some(toml_string(b"p\"w"))),
                ("client-query-buffer-limit", Some("2097152".into())),
            ],
        );
        assert_eq!(
            out,
            "# the proxy\nlisten = \"127.0.0.1:6379\"\n# requirepass = \"x\"\ntimeout = 30\n\nrequirepass = \"p\\\"w\"\nclient-query-buffer-limit = 2097152\n[mesh]\ntimeout = 9\n"
        );
        let back = rewritten(&out, &[("requirepass", None)]);
        assert!(
            !back.lines().any(|l| l.starts_with("requirepass")),
            "{back}"
        );
        assert!(back.contains("# requirepass = \"x\""), "comments are kept");
    }

    #[test]
    fn a_rewritten_file_replaces_the_old_one_whole() {
        let dir = std::env::temp_dir().join(format!("tierkv-rewrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.toml");
        std::fs::write(&path, FILE).unwrap();
        rewrite(&path, &[("timeout", Some("5".into()))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\ntimeout = 5\n"));
        assert!(!path.with_extension("rewrite.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_characters_and_quotes_are_escaped() {
        assert_eq!(toml_string(b"a\\b\n\"c"), "\"a\\\\b\\u000A\\\"c\"");
    }
}
