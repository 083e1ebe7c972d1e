//! Encoding helpers for the on-disk formats (`docs/format/master-log.md`): the field layouts
//! are those of the wire protocol (`net::codec`), so the same structures serve both.

/// Implements [`net::codec::Wire`] for a struct whose fields are encoded in declaration order.
macro_rules! disk_struct {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl ::net::codec::Wire for $name {
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                $( ::net::codec::Wire::encode(&self.$field, buf); )*
            }
            fn decode(r: &mut ::net::codec::Reader) -> Result<Self, ::net::codec::DecodeError> {
                Ok(Self { $( $field: ::net::codec::Wire::decode(r)?, )* })
            }
        }
    };
}
pub(crate) use disk_struct;

/// Implements [`net::codec::Wire`] for an enum of named-field variants: a `u8` tag, then the
/// fields in order.
macro_rules! disk_enum {
    ($name:ident, $what:literal { $($tag:literal => $variant:ident { $($field:ident),* $(,)? }),* $(,)? }) => {
        impl ::net::codec::Wire for $name {
            #[allow(unused_variables)]
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                match self {
                    $( Self::$variant { $($field),* } => {
                        ::net::codec::Wire::encode(&($tag as u8), buf);
                        $( ::net::codec::Wire::encode($field, buf); )*
                    } )*
                }
            }
            fn decode(r: &mut ::net::codec::Reader) -> Result<Self, ::net::codec::DecodeError> {
                let tag = r.u8($what)?;
                Ok(match tag {
                    $( $tag => Self::$variant { $( $field: ::net::codec::Wire::decode(r)?, )* }, )*
                    other => return Err(::net::codec::DecodeError::UnknownTag {
                        what: $what,
                        tag: other.into(),
                    }),
                })
            }
        }
    };
}
pub(crate) use disk_enum;
