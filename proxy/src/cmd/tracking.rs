//! `CLIENT TRACKING`, `CLIENT CACHING`, `CLIENT GETREDIR` and `CLIENT TRACKINGINFO`
//! (Redis's `networking.c`), over [`crate::tracking`].

use bytes::Bytes;

use super::Session;
use crate::resp::Reply;
use crate::shared::Shared;
use crate::tracking::Options;

fn is(a: &[u8], word: &str) -> bool {
    a.eq_ignore_ascii_case(word.as_bytes())
}

/// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`
/// (`args` from `ON|OFF` on).
pub fn tracking(shared: &Shared, sess: &mut Session, args: &[Bytes]) -> Reply {
    let opts = match parse(shared, &args[1..]) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if is(&args[0], "off") {
        sess.tracking.disable();
        return Reply::OK;
    }
    if !is(&args[0], "on") {
        return Reply::err("syntax error");
    }
    if let Err(e) = check(shared, sess, &opts) {
        return Reply::err(e);
    }
    // Pushes reach the connection through its mailbox.
    if sess.pubsub.is_none() {
        sess.pubsub = Some(shared.pubsub.subscriber(sess.id));
    }
    let first = !shared.tracker.local();
    sess.tracking.enable(&shared.tracker, sess.id, opts);
    if first {
        // The other proxies invalidate their writes here from now on.
        shared.mesh.invalidate_peers(&[], false, 0, true);
    }
    Reply::OK
}

fn parse(shared: &Shared, args: &[Bytes]) -> Result<Options, Reply> {
    let mut opts = Options::default();
    let mut i = 0;
    while i < args.len() {
        let more = i + 1 < args.len();
        let a = &args[i];
        if is(a, "redirect") && more {
            i += 1;
            if opts.redirect.is_some() {
                return Err(Reply::err(
                    "A client can only redirect to a single other client",
                ));
            }
            let id = super::util::int(&args[i])?;
            let id = u64::try_from(id)
                .ok()
                .filter(|&id| id != 0 && shared.client_table.get(id).is_some());
            let Some(id) = id else {
                return Err(Reply::err(
                    "The client ID you want redirect to does not exist",
                ));
            };
            opts.redirect = Some(id);
        } else if is(a, "bcast") {
            opts.bcast = true;
        } else if is(a, "optin") {
            opts.optin = true;
        } else if is(a, "optout") {
            opts.optout = true;
        } else if is(a, "noloop") {
            opts.noloop = true;
        } else if is(a, "prefix") && more {
            i += 1;
            opts.prefixes.push(args[i].clone());
        } else {
            return Err(Reply::err("syntax error"));
        }
        i += 1;
    }
    Ok(opts)
}

/// Redis's checks before tracking is turned on, in its order.
fn check(shared: &Shared, sess: &Session, opts: &Options) -> Result<(), String> {
    if !opts.bcast && !opts.prefixes.is_empty() {
        return Err("PREFIX option requires BCAST mode to be enabled".into());
    }
    if let Some(old) = &sess.tracking.on
        && old.bcast != opts.bcast
    {
        return Err("You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.".into());
    }
    if opts.bcast && (opts.optin || opts.optout) {
        return Err("OPTIN and OPTOUT are not compatible with BCAST".into());
    }
    if opts.optin && opts.optout {
        return Err("You can't specify both OPTIN mode and OPTOUT mode".into());
    }
    if let Some(old) = &sess.tracking.on
        && (opts.optin && old.optout || opts.optout && old.optin)
    {
        return Err("You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.".into());
    }
    if opts.bcast
        && let Some(e) = shared.tracker.prefix_collision(sess.id, &opts.prefixes)
    {
        return Err(e);
    }
    Ok(())
}

/// `CLIENT CACHING YES|NO`.
pub fn caching(sess: &mut Session, arg: &[u8]) -> Reply {
    let Some(on) = &sess.tracking.on else {
        return Reply::err(
            "CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        );
    };
    let (optin, optout) = (on.optin, on.optout);
    if is(arg, "yes") {
        if !optin {
            return Reply::err(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
        }
    } else if is(arg, "no") {
        if !optout {
            return Reply::err(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
        }
    } else {
        return Reply::err("syntax error");
    }
    sess.tracking.caching = true;
    Reply::OK
}

fn redirect_id(sess: &Session) -> i64 {
    match &sess.tracking.on {
        None => -1,
        Some(o) => o
            .redirect
            .map_or(0, |id| i64::try_from(id).unwrap_or(i64::MAX)),
    }
}

/// `CLIENT GETREDIR`: the redirection target, 0 when tracking without one, -1 when not
/// tracking.
pub fn getredir(sess: &Session) -> Reply {
    Reply::Int(redirect_id(sess))
}

/// `CLIENT TRACKINGINFO`: flags, redirect, prefixes.
pub fn trackinginfo(shared: &Shared, sess: &Session) -> Reply {
    let word = |w: &'static str| Reply::Bulk(Bytes::from_static(w.as_bytes()));
    let mut flags = Vec::new();
    let mut prefixes = Vec::new();
    match &sess.tracking.on {
        None => flags.push(word("off")),
        Some(o) => {
            flags.push(word("on"));
            let caching = sess.tracking.caching;
            for (set, w) in [
                (o.bcast, "bcast"),
                (o.optin, "optin"),
                (o.optin && caching, "caching-yes"),
                (o.optout, "optout"),
                (o.optout && caching, "caching-no"),
                (o.noloop, "noloop"),
                (shared.tracker.broken(sess.id), "broken_redirect"),
            ] {
                if set {
                    flags.push(word(w));
                }
            }
            if o.bcast {
                prefixes = o.prefixes.iter().cloned().map(Reply::Bulk).collect();
            }
        }
    }
    Reply::Map(vec![
        (word("flags"), Reply::Set(flags)),
        (word("redirect"), Reply::Int(redirect_id(sess))),
        (word("prefixes"), Reply::Array(prefixes)),
    ])
}
