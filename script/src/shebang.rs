//! Redis 7's script shebang (`#!lua flags=no-writes,allow-oom`), as `evalExtractShebangFlags`.

use crate::Flags;

/// The flags a body declares and where the code to compile starts (the shebang line is
/// skipped but its newline kept, so line numbers stay the user's). `Err` is the error reply.
pub(crate) fn parse(body: &[u8]) -> Result<(Flags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((Flags::default(), 0));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    // Words as `sdssplitargs` splits them (`flags="no-writes"` is `flags=no-writes`).
    let words = net::redis_args::split_args(&body[..end]).unwrap_or_default();
    let words: Vec<String> = words
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let mut parts = words.iter().map(String::as_str);
    let Some(engine) = parts.next() else {
        return Err("ERR Invalid engine in script shebang".into());
    };
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = Flags {
        shebang: true,
        ..Flags::default()
    };
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for name in list.split(',').filter(|n| !n.is_empty()) {
            set_flag(&mut flags, name)?;
        }
    }
    Ok((flags, end))
}

fn set_flag(flags: &mut Flags, name: &str) -> Result<(), String> {
    let slot = match name {
        "no-writes" => &mut flags.no_writes,
        "allow-oom" => &mut flags.allow_oom,
        "allow-stale" => &mut flags.allow_stale,
        "no-cluster" => &mut flags.no_cluster,
        "allow-cross-slot-keys" => &mut flags.allow_cross_slot_keys,
        _ => return Err(format!("ERR Unexpected flag in script shebang: {name}")),
    };
    *slot = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_body_without_shebang_has_default_flags() {
        let (flags, start) = parse(b"return 1").unwrap();
        assert!(!flags.shebang);
        assert_eq!(start, 0);
    }

    #[test]
    fn shebang_flags_are_read_and_the_line_skipped_keeping_its_newline() {
        let body = b"#!lua flags=no-writes,allow-oom\nreturn 1";
        let (flags, start) = parse(body).unwrap();
        assert!(flags.shebang && flags.no_writes && flags.allow_oom);
        assert!(!flags.allow_stale && !flags.no_cluster && !flags.allow_cross_slot_keys);
        assert_eq!(&body[start..], b"\nreturn 1");
        let (all, _) =
            parse(b"#!lua flags=allow-stale,no-cluster,allow-cross-slot-keys\n").unwrap();
        assert!(all.allow_stale && all.no_cluster && all.allow_cross_slot_keys);
        let (none, _) = parse(b"#!lua\nreturn 1").unwrap();
        assert!(none.shebang && !none.no_writes);
    }

    #[test]
    fn bad_shebangs_get_redis_errors() {
        assert_eq!(parse(b"#!lua").unwrap_err(), "ERR Invalid script shebang");
        assert_eq!(
            parse(b"#!python\n").unwrap_err(),
            "ERR Unexpected engine in script shebang: #!python"
        );
        assert_eq!(
            parse(b"#!lua flags=no-writes,bad\n").unwrap_err(),
            "ERR Unexpected flag in script shebang: bad"
        );
        assert_eq!(
            parse(b"#!lua name=x\n").unwrap_err(),
            "ERR Unknown lua shebang option: name=x"
        );
    }
}
