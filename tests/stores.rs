//! The store conformance suite against every backend of this crate.

mod memory {
    use std::sync::Arc;

    use nanosession::store::{MemorySessionStore, MemorySpentSet};

    nanosession::session_store_conformance!(
        async { Arc::new(MemorySessionStore::with_capacity(64)) },
        capacity = 64
    );
    nanosession::spent_set_conformance!(async { Arc::new(MemorySpentSet::default()) });

    #[tokio::test]
    async fn memory_spent_set_is_bounded_and_never_evicts_live_entries() {
        use nanosession::store::conformance::random_hash;
        use nanosession::store::SpentSet;
        let spent = MemorySpentSet::with_capacity(2);
        let keep = nanosession::session::unix_now() + 3600;
        let (a, b) = (random_hash(), random_hash());
        assert!(spent.claim(&a, keep).await.unwrap());
        assert!(spent.claim(&b, keep).await.unwrap());
        assert!(spent.claim(&random_hash(), keep).await.is_err(), "full set refuses, it does not evict");
        assert!(spent.contains(&a).await.unwrap() && spent.contains(&b).await.unwrap());
    }
}
