//! The [`Host`] of the run under way, reachable from `redis.call`/`redis.pcall`.
//!
//! `redis.call` and `redis.pcall` are registered once per VM and find the run's host here.
//! Binding them per run instead (an `mlua` scope with two fresh callbacks swapped into the
//! `redis` table) cost ~37,000 instructions per run, a third of a small script's whole cost
//! (`docs/benchmarks.md`, "Scripting … after"). The one unsafe site of this crate: the
//! host's lifetime is erased while it is lent, and the slot is emptied before the loan ends.

use std::cell::Cell;
use std::ptr::NonNull;

use crate::Host;

/// Holds the host lent for one run; empty between runs.
#[derive(Debug, Default)]
pub(crate) struct HostSlot {
    host: Cell<Option<NonNull<dyn Host + 'static>>>,
    /// A call is using the host (a host never calls back into Lua; if it did, the nested
    /// call is refused rather than aliasing the host).
    in_use: Cell<bool>,
}

/// Empties the slot when the run ends, however it ends.
struct Clear<'a>(&'a HostSlot);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.host.set(None);
        self.0.in_use.set(false);
    }
}

/// Gives the slot back when a call ends.
struct Release<'a>(&'a Cell<bool>);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl HostSlot {
    /// Runs `f` with `host` in the slot; the slot is empty again when `f` returns or unwinds.
    #[expect(
        unsafe_code,
        reason = "erases the host's lifetime for the duration of the run (see SAFETY)"
    )]
    pub(crate) fn lend<R>(&self, host: &mut dyn Host, f: impl FnOnce() -> R) -> R {
        let ptr: NonNull<dyn Host + '_> = NonNull::from(host);
        // SAFETY: only the lifetime bound of the trait object changes (same layout). The
        // pointer is dereferenced only by `with`, only while this call is on the stack (the
        // guard empties the slot before `lend` returns or unwinds), and `host` is mutably
        // borrowed for all of that time, so it outlives every use and nothing else aliases it.
        let ptr: NonNull<dyn Host + 'static> = unsafe { std::mem::transmute(ptr) };
        let _clear = Clear(self);
        self.host.set(Some(ptr));
        self.in_use.set(false);
        f()
    }

    /// Runs `f` with the lent host; `None` outside a run or inside another call.
    #[expect(
        unsafe_code,
        reason = "dereferences the host lent by `lend`, which is still on the stack (see SAFETY)"
    )]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut dyn Host) -> R) -> Option<R> {
        let mut ptr = self.host.get()?;
        if self.in_use.replace(true) {
            return None;
        }
        let _release = Release(&self.in_use);
        // SAFETY: the pointer was set by `lend`, which is still on the stack (the slot is
        // emptied before it returns), so the host is alive; `in_use` makes this the only
        // reference to it for the duration of `f`.
        let host = unsafe { ptr.as_mut() };
        Some(f(host))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::HostSlot;
    use crate::{Host, Resp, Value};

    struct Counting(u32);

    impl Host for Counting {
        fn call(&mut self, _: &[Bytes], _: Resp) -> Value {
            self.0 += 1;
            Value::Int(i64::from(self.0))
        }
        fn acl_check(&mut self, _: &[Bytes]) -> Result<bool, String> {
            Ok(true)
        }
    }

    #[test]
    fn the_host_is_reachable_only_while_lent() {
        let slot = HostSlot::default();
        assert!(slot.with(|h| h.call(&[], Resp::Two)).is_none());
        let mut host = Counting(0);
        slot.lend(&mut host, || {
            assert_eq!(slot.with(|h| h.call(&[], Resp::Two)), Some(Value::Int(1)));
            assert_eq!(slot.with(|h| h.call(&[], Resp::Two)), Some(Value::Int(2)));
        });
        assert!(slot.with(|h| h.call(&[], Resp::Two)).is_none());
        assert_eq!(host.0, 2);
    }

    #[test]
    fn a_nested_call_is_refused() {
        let slot = HostSlot::default();
        let mut host = Counting(0);
        slot.lend(&mut host, || {
            let inner = slot.with(|_| slot.with(|h| h.call(&[], Resp::Two)));
            assert_eq!(inner, Some(None));
        });
    }

    #[test]
    fn the_slot_is_emptied_when_the_run_unwinds() {
        let slot = HostSlot::default();
        let mut host = Counting(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.lend(&mut host, || panic!("run failed"));
        }));
        assert!(r.is_err());
        assert!(slot.with(|h| h.call(&[], Resp::Two)).is_none());
    }
}
