//! What a single tracker keeps on disk: the durable file index and the chunks' verification
//! state, in redb ([`index`]). A cluster keeps the same in replicated JetStream KV buckets
//! instead (`crate::cluster::store`).

pub mod index;
