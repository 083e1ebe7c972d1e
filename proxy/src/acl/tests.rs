use bytes::Bytes;

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn args(line: &str) -> Vec<Bytes> {
    line.split(' ').map(b).collect()
}

fn user(ops: &str) -> User {
    let mut u = User::new(b("u"));
    for op in ops.split(' ') {
        u.apply(op.as_bytes()).unwrap();
    }
    u
}

#[test]
fn the_command_table_fits_the_bitmap_and_is_sorted() {
    assert!(commands::COMMANDS.len() <= 512);
    assert!(commands::COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
}

#[test]
fn container_calls_are_checked_under_their_subcommand() {
    assert_eq!(
        id_of_call(&args("CONFIG GET maxmemory")),
        command_id(b"config|get")
    );
    assert_eq!(id_of_call(&args("CONFIG nosuch")), command_id(b"config"));
    assert_eq!(id_of_call(&args("GET k")), command_id(b"get"));
    assert_eq!(subcommands(command_id(b"get").unwrap()).len(), 0);
    assert!(subcommands(command_id(b"config").unwrap()).len() >= 5);
}

#[test]
fn a_user_runs_only_what_its_categories_and_commands_allow() {
    let u = user("on -@all +@scripting +set ~x*");
    let ok = |line: &str| {
        let a = args(line);
        u.check(id_of_call(&a).unwrap(), &a, &[1], &[], false)
    };
    assert_eq!(ok("set xx 1"), Ok(()));
    assert_eq!(ok("hset xx f 1"), Err(Denied::Command));
    assert_eq!(ok("set yy 1"), Err(Denied::Key(1)));
    assert_eq!(ok("eval x 0"), Ok(()));
}

#[test]
fn read_and_write_key_patterns_grant_only_their_access() {
    let u = user("on +@all %R~r* %W~w*");
    let check = |line: &str| {
        let a = args(line);
        u.check(id_of_call(&a).unwrap(), &a, &[1], &[], false)
    };
    assert_eq!(check("get r1"), Ok(()));
    assert_eq!(check("get w1"), Err(Denied::Key(1)));
    assert_eq!(check("del w1"), Ok(()));
    assert_eq!(check("del r1"), Err(Denied::Key(1)));
    // EXISTS neither reads nor writes the value: any matching pattern grants it.
    assert_eq!(check("exists w1"), Ok(()));
}

#[test]
fn psubscribe_patterns_match_channel_patterns_literally() {
    let u = user("on +@all allkeys resetchannels &news.*");
    let a = args("psubscribe news.*");
    let id = id_of_call(&a).unwrap();
    assert_eq!(u.check(id, &a, &[], &[1], true), Ok(()));
    let a = args("psubscribe news.a*");
    assert_eq!(u.check(id, &a, &[], &[1], true), Err(Denied::Channel(1)));
    let a = args("publish news.sport m");
    let id = id_of_call(&a).unwrap();
    assert_eq!(u.check(id, &a, &[], &[1], false), Ok(()));
}

#[test]
fn first_args_allow_one_form_of_a_denied_command() {
    let u = user("on -@all +select|0");
    let a = args("select 0");
    let id = id_of_call(&a).unwrap();
    assert_eq!(u.check(id, &a, &[], &[], false), Ok(()));
    let a = args("select 1");
    assert_eq!(u.check(id, &a, &[], &[], false), Err(Denied::Command));
}

/// The descriptions are redis-server 7.0.15's for the same modifiers (captured with
/// `ACL LIST` / `ACL GETUSER`).
#[test]
fn descriptions_are_redis_servers() {
    let bob = user("on >123 +@scripting +set ~x*");
    assert_eq!(
        bob.describe().replace("u ", "bob "),
        "user bob on #a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3 ~x* \
         resetchannels -@all +@scripting +set"
    );
    let alice = User::new(b("alice"));
    assert_eq!(alice.describe(), "user alice off resetchannels -@all");
    let c = user("+@all -get %R~a* %W~b* &ch* on nopass +select|0");
    assert_eq!(
        c.describe(),
        "user u on nopass %R~a* %W~b* resetchannels &ch* +@all -get"
    );
    assert_eq!(c.channels_description(), "&ch*");
    let d = user("-@all +select|0 +config|get +@hash -hset");
    assert_eq!(
        d.describe_commands(),
        "-@all +@hash +config|get -hset +select|0"
    );
}

#[test]
fn modifiers_fail_with_redis_reasons_and_change_nothing() {
    let acl = Acl::new(None);
    let err = acl
        .set_user(b"e", &[b("on"), b("+config|get|x")])
        .unwrap_err();
    assert_eq!(err.1, "Allowing first-arg of a subcommand is not supported");
    assert!(acl.get(b"e").is_none(), "a failed SETUSER creates no user");
    let err = acl.set_user(b"e", &[b("+nosuch")]).unwrap_err();
    assert_eq!(err.1, "Unknown command or category name in ACL");
    let err = acl
        .set_user(b"e", &[b("~a"), b("allkeys"), b("~b")])
        .unwrap_err();
    assert!(err.1.starts_with("Adding a pattern after the * pattern"));
    assert_eq!(
        acl.set_user(b"e", &[b("foo")]).unwrap_err().1,
        "Syntax error"
    );
    assert_eq!(
        acl.delete_users(&[b("default")]),
        Err("The 'default' user cannot be removed")
    );
}

#[test]
fn passwords_authenticate_enabled_users_only() {
    let acl = Acl::new(Some(b"secret"));
    assert!(!acl.default_is_open());
    assert!(acl.authenticate(b"default", b"secret").is_some());
    assert!(acl.authenticate(b"default", b"nope").is_none());
    acl.set_user(b"bob", &[b(">pw")]).unwrap();
    assert!(acl.authenticate(b"bob", b"pw").is_none(), "bob is off");
    acl.set_user(b"bob", &[b("on")]).unwrap();
    assert!(acl.authenticate(b"bob", b"pw").is_some());
    acl.set_default_password(b"");
    assert!(acl.default_is_open());
}

#[test]
fn a_connection_sees_changes_to_its_user_and_loses_a_deleted_one() {
    let acl = Acl::new(None);
    acl.set_user(b"bob", &[b("on"), b("nopass"), b("+@all"), b("allkeys")])
        .unwrap();
    let mut s = acl.authenticate(b"bob", b"").unwrap();
    assert!(
        s.rules()
            .check(
                command_id(b"get").unwrap(),
                &args("get k"),
                &[1],
                &[],
                false
            )
            .is_ok()
    );
    acl.set_user(b"bob", &[b("-get")]).unwrap();
    acl.refresh(&mut s).unwrap();
    assert_eq!(
        s.rules().check(
            command_id(b"get").unwrap(),
            &args("get k"),
            &[1],
            &[],
            false
        ),
        Err(Denied::Command)
    );
    acl.delete_users(&[b("bob")]).unwrap();
    assert_eq!(acl.refresh(&mut s), Err(UserGone));
}

#[test]
fn rules_text_reads_back_as_the_same_permissions() {
    for ops in [
        "on -@all +@scripting +set ~x*",
        "+@all -get %R~a* %W~b* &ch* +select|0",
        "-@all +select|0 +config|get +@hash -hset allkeys allchannels",
        "-@all",
    ] {
        let u = user(ops);
        let back = User::from_rules(&u.rules_text()).unwrap();
        assert_eq!(back.rules_text(), u.rules_text(), "{ops}");
        assert_eq!(back.describe_commands(), u.describe_commands(), "{ops}");
        for line in [
            "get a1",
            "set b1 v",
            "hget h f",
            "select 0",
            "config get x",
            "eval s 0",
        ] {
            let a = args(line);
            let id = id_of_call(&a).unwrap();
            assert_eq!(
                back.check(id, &a, &[1], &[], false),
                u.check(id, &a, &[1], &[], false),
                "{ops}: {line}"
            );
        }
    }
    assert!(User::from_rules(b"+nosuch").is_none());
}
