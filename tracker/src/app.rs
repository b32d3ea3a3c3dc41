//! The running tracker as its HTTP and websocket layers see it: the state every layer shares
//! ([`Shared`], reached through `Deref`) beside this node's cluster membership, if any.
//!
//! The cluster layer ([`crate::cluster`]) works on [`Shared`] alone and is known to it only
//! as a [`crate::core::NodeLink`]: this struct is where the two meet, above both, so that
//! neither imports the other.

use crate::cluster::Cluster;
use crate::config::Config;
use crate::core::NodeLink;
use crate::driver::Shared;
use crate::persistence::index::IndexError;
use std::ops::Deref;
use std::sync::Arc;

pub struct AppState {
    pub shared: Arc<Shared>,
    /// This node's membership of a tracker cluster (`None`: a single tracker).
    pub cluster: Option<Arc<Cluster>>,
}

impl AppState {
    /// A single tracker: opens the durable index (if configured) and restores every file.
    pub fn new(config: Config) -> Result<Self, IndexError> {
        Self::with_cluster(config, None)
    }

    /// A node of `cluster` (or a single tracker): see [`Shared::new`].
    pub fn with_cluster(config: Config, cluster: Option<Arc<Cluster>>) -> Result<Self, IndexError> {
        let nodes = cluster.clone().map(|c| c as Arc<dyn NodeLink>);
        Ok(Self { shared: Arc::new(Shared::new(config, nodes)?), cluster })
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}
