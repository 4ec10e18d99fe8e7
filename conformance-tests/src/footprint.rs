//! How large each call's future is. Every call of the object-safe [`Storage`] trait boxes
//! its future, copying it whole, and a future is as large as the largest state of every
//! path it might take: a connect, a pool wait and a ping reached from a call (paths most
//! calls do not take) made the MySQL backend's reads 8 KiB and its writes 25 KiB, copied on
//! every call. Each backend's
//! tests hold its futures under a limit of its own with [`assert_call_futures_at_most`].

use fsmstore_core::{BotId, ChatId, Data, Storage, StorageKey, UserId};

/// The size in bytes of the future of each call of `storage`: made, never polled, so
/// nothing is read or written. Only the outer future is measured: a backend that boxes its
/// calls' work inside (Redis) shows that box's pointer, not what it holds.
pub fn call_futures(storage: &dyn Storage) -> Vec<(&'static str, usize)> {
    let key = StorageKey::new(BotId(1), ChatId(1), UserId(1));
    let data = Data::new();
    let sizes = vec![
        (
            "get_state",
            std::mem::size_of_val(&*storage.get_state(&key)),
        ),
        ("get_data", std::mem::size_of_val(&*storage.get_data(&key))),
        (
            "get_record",
            std::mem::size_of_val(&*storage.get_record(&key)),
        ),
        (
            "set_state",
            std::mem::size_of_val(&*storage.set_state(&key, Some("Form:name"))),
        ),
        (
            "set_data",
            std::mem::size_of_val(&*storage.set_data(&key, &data)),
        ),
        (
            "update_data",
            std::mem::size_of_val(&*storage.update_data(&key, &data)),
        ),
        (
            "transition",
            std::mem::size_of_val(&*storage.transition(&key, Some("Form:name"), &data)),
        ),
        (
            "set_record",
            std::mem::size_of_val(&*storage.set_record(&key, Some("Form:name"), &data)),
        ),
        ("clear", std::mem::size_of_val(&*storage.clear(&key))),
    ];
    // Bound to a name: the unpolled futures borrow `key` and `data` until dropped here.
    sizes
}

/// Panics, listing every call's size, if one call's future is larger than `limit` bytes.
pub fn assert_call_futures_at_most(storage: &dyn Storage, limit: usize) {
    let sizes = call_futures(storage);
    let over: Vec<_> = sizes.iter().filter(|(_, size)| *size > limit).collect();
    assert!(
        over.is_empty(),
        "call futures over {limit} bytes: {over:?} (all: {sizes:?}); box the rare path that \
         grew them (see fsmstore_conformance::footprint)"
    );
}
