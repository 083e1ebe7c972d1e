//! Generic proptest strategies shared by the message modules (test builds only). Strategies
//! that build a message type live beside that type, so this module imports nothing of the
//! crate.

use bytes::Bytes;
use proptest::prelude::*;

pub fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}
pub fn opt_bytes() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(bytes())
}
pub fn bytes_vec() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(bytes(), 0..6)
}
pub fn opt_bytes_vec() -> impl Strategy<Value = Vec<Option<Bytes>>> {
    prop::collection::vec(opt_bytes(), 0..6)
}
pub fn pairs() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
    prop::collection::vec((bytes(), bytes()), 0..6)
}
pub fn scored() -> impl Strategy<Value = Vec<(Bytes, f64)>> {
    prop::collection::vec(
        (
            bytes(),
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
        ),
        0..6,
    )
}
pub fn floats() -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(
        prop::option::of(any::<f64>().prop_filter("not NaN", |f| !f.is_nan())),
        0..6,
    )
}
pub fn opt_ints() -> impl Strategy<Value = Vec<Option<i64>>> {
    prop::collection::vec(prop::option::of(any::<i64>()), 0..6)
}
pub fn ints() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(any::<i64>(), 0..6)
}
pub fn small_vec<T: Arbitrary>() -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(any::<T>(), 0..4)
}
