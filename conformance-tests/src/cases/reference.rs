//! Differential testing: the backend against [`MemoryStorage`], the reference, on
//! pseudo-random operation sequences.

use fsmstore_core::{BotId, ChatId, Data, MemoryStorage, Storage, StorageKey, UserId};
use serde_json::{json, Value};

use crate::Ctx;

/// xorshift64*: a small deterministic generator, so a failure names a reproducible seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn value(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => json!(rng.below(1000)),
        2 => json!(format!("s{}", rng.below(50))),
        3 => json!([rng.below(3), "x"]),
        4 => json!({"nested": rng.below(5), "deep": {"k": rng.below(2) == 0}}),
        _ => json!(rng.below(2) == 0),
    }
}

fn object(rng: &mut Rng, max_fields: u64) -> Data {
    (0..rng.below(max_fields + 1))
        .map(|_| (format!("f{}", rng.below(6)), value(rng)))
        .collect()
}

/// 400 random operations (every write, including `transition` and `set_record`) on 6 keys, each applied to the backend and to a `MemoryStorage`:
/// every result and the final contents must be equal.
pub async fn matches_memory_storage_on_random_operations(ctx: Ctx) {
    let s = ctx.storage().await;
    let reference = MemoryStorage::new();
    let seed = 0x5EED_F5A5_u64;
    let mut rng = Rng(seed);
    let keys: Vec<StorageKey> = (1..=6)
        .map(|n| StorageKey::new(BotId(42), ChatId(-n), UserId(n)))
        .collect();
    for step in 0..400 {
        let k = &keys[rng.below(keys.len() as u64) as usize];
        let op = rng.below(10);
        let context = format!("seed {seed:#x}, step {step}, op {op}, key {k:?}");
        match op {
            0 => {
                let state = (rng.below(3) != 0).then(|| format!("S{}", rng.below(4)));
                s.set_state(k, state.as_deref()).await.unwrap();
                reference.set_state(k, state.as_deref()).await.unwrap();
            }
            1 => {
                let data = object(&mut rng, 4);
                s.set_data(k, &data).await.unwrap();
                reference.set_data(k, &data).await.unwrap();
            }
            2 | 3 => {
                let patch = object(&mut rng, 3);
                let got = s.update_data(k, &patch).await.unwrap();
                let want = reference.update_data(k, &patch).await.unwrap();
                assert_eq!(got, want, "update_data: {context}");
            }
            4 => assert_eq!(
                s.clear(k).await.unwrap(),
                reference.clear(k).await.unwrap(),
                "clear: {context}"
            ),
            9 => {
                let state = (rng.below(3) != 0).then(|| format!("S{}", rng.below(4)));
                let data = object(&mut rng, 3);
                s.set_record(k, state.as_deref(), &data).await.unwrap();
                reference
                    .set_record(k, state.as_deref(), &data)
                    .await
                    .unwrap();
            }
            5 => {
                let field = format!("f{}", rng.below(6));
                let got = s.get_value(k, &field).await.unwrap();
                assert_eq!(
                    got,
                    reference.get_value(k, &field).await.unwrap(),
                    "get_value: {context}"
                );
            }
            8 => {
                let state = (rng.below(3) != 0).then(|| format!("S{}", rng.below(4)));
                let patch = object(&mut rng, 2);
                let got = s.transition(k, state.as_deref(), &patch).await.unwrap();
                let want = reference
                    .transition(k, state.as_deref(), &patch)
                    .await
                    .unwrap();
                assert_eq!(got, want, "transition: {context}");
            }
            6 => assert_eq!(
                s.get_record(k).await.unwrap(),
                reference.get_record(k).await.unwrap(),
                "get_record: {context}"
            ),
            _ => assert_eq!(
                s.key_count().await.unwrap(),
                reference.key_count().await.unwrap(),
                "key_count: {context}"
            ),
        }
    }
    for k in &keys {
        assert_eq!(
            s.get_record(k).await.unwrap(),
            reference.get_record(k).await.unwrap(),
            "final {k:?}"
        );
    }
    assert_eq!(
        s.key_count().await.unwrap(),
        reference.key_count().await.unwrap()
    );
}
