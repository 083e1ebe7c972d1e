//! The reply of scored members, shared by the one-range commands (`zsets`) and the
//! multi-round ones ([`super::multi`]). A leaf.

use bytes::Bytes;

use crate::resp::Reply;

/// Members, with their scores when `withscores` (pairs: nested in RESP3).
pub fn scored(items: Vec<(Bytes, f64)>, withscores: bool) -> Reply {
    if withscores {
        Reply::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Reply::Bulk(m), Reply::Double(s)))
                .collect(),
        )
    } else {
        Reply::Array(items.into_iter().map(|(m, _)| Reply::Bulk(m)).collect())
    }
}
