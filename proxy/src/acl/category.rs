//! ACL command categories (`ACL CAT`): one bit each, in Redis's order (`ACLCommandCategories`).

macro_rules! categories {
    ($($name:ident = $bit:literal, $text:literal;)*) => {
        $(
            #[doc = concat!("`@", $text, "`.")]
            pub const $name: u32 = 1 << $bit;
        )*
        /// Every category's name and bit, in `ACL CAT`'s order.
        pub const ALL: [(&str, u32); 21] = [$(($text, $name)),*];
    };
}

categories! {
    KEYSPACE = 0, "keyspace";
    READ = 1, "read";
    WRITE = 2, "write";
    SET = 3, "set";
    SORTEDSET = 4, "sortedset";
    LIST = 5, "list";
    HASH = 6, "hash";
    STRING = 7, "string";
    BITMAP = 8, "bitmap";
    HYPERLOGLOG = 9, "hyperloglog";
    GEO = 10, "geo";
    STREAM = 11, "stream";
    PUBSUB = 12, "pubsub";
    ADMIN = 13, "admin";
    FAST = 14, "fast";
    SLOW = 15, "slow";
    BLOCKING = 16, "blocking";
    DANGEROUS = 17, "dangerous";
    CONNECTION = 18, "connection";
    TRANSACTION = 19, "transaction";
    SCRIPTING = 20, "scripting";
}

/// The bit of the category `name` (case-insensitive).
pub fn by_name(name: &[u8]) -> Option<u32> {
    ALL.iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|&(_, bit)| bit)
}
