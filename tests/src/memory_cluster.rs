//! The memory cluster driver: several cores, one per node, joined by the
//! memory bus ([`crate::cluster_bus`]), on one virtual clock.
//!
//! Each node is a [`MemoryDriver`] whose config names it
//! (`Config.cluster`); its bus requests and history queries go to the
//! bus. Delivery is deterministic: after every step, the driver moves
//! everything until nothing moves, in rounds: each node in name order
//! hands the bus what its core asked (queries are answered at once from
//! the streams), then each node in name order hears everything the bus
//! has for it, first come first served. `advance` moves every node's
//! clock together, stopping at each timer due on any node (and at each
//! deadline of the bus: a cut node's lease renewal and lapse) in between.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chatd_core::cluster::{ClusterConfig, NodeName};
use chatd_core::{Config, Dialect};

use crate::cluster_bus::{BusError, MemoryBus};
use crate::driver::{Driver, DriverError, NodeStep, Received};
use crate::memory::{External, MemoryDriver};

/// The reason a node stopped with `stop NODE` gives its clients.
pub const STOP_REASON: &str = "stopping";

/// More rounds than this after one step: the nodes keep talking forever.
const MAX_ROUNDS: usize = 10_000;

/// Runs cluster transcripts: every node in memory, one memory bus.
#[derive(Debug)]
pub struct MemoryClusterDriver {
    seed: u64,
    epoch: Instant,
    now: Instant,
    config: Config,
    bus: MemoryBus,
    /// Replies to a node's requests before what the scripts published.
    replies_first: bool,
    /// Every node started, killed ones included (their clients' closed
    /// connections are still read).
    nodes: BTreeMap<NodeName, MemoryDriver>,
    /// The node each client is on.
    clients: HashMap<String, NodeName>,
}

impl MemoryClusterDriver {
    /// A cluster driver whose chunking (per node) follows `seed`.
    pub fn new(seed: u64) -> Self {
        let epoch = Instant::now();
        Self {
            seed,
            epoch,
            now: epoch,
            config: Config::default(),
            bus: MemoryBus::new(Config::default().history_size),
            replies_first: false,
            nodes: BTreeMap::new(),
            clients: HashMap::new(),
        }
    }

    /// The same, on a bus whose replies reach a node before what the
    /// scripts published to it ([`MemoryBus::replies_first`]): a
    /// transcript must hold in both orders, as the engine's bus gives
    /// either.
    pub fn replies_first(seed: u64) -> Self {
        Self {
            replies_first: true,
            ..Self::new(seed)
        }
    }

    /// The bus, to look at what the cluster shares.
    pub fn bus(&self) -> &MemoryBus {
        &self.bus
    }

    fn node_of(&mut self, client: &str) -> Result<&mut MemoryDriver, DriverError> {
        let node = self
            .clients
            .get(client)
            .ok_or_else(|| DriverError(format!("{client} never connected")))?;
        self.nodes
            .get_mut(node)
            .ok_or_else(|| DriverError(format!("no node {node}")))
    }

    fn running(&mut self, node: &NodeName) -> Result<&mut MemoryDriver, DriverError> {
        self.nodes
            .get_mut(node)
            .filter(|driver| driver.is_running())
            .ok_or_else(|| DriverError(format!("node {node} is not running")))
    }

    /// Starts a node: a new one, or a killed one again on what it persisted.
    fn start_node(&mut self, node: &NodeName) -> Result<(), DriverError> {
        let mut config = self.config.clone();
        config.cluster = Some(ClusterConfig { node: node.clone() });
        match self.nodes.get_mut(node) {
            Some(driver) if driver.is_running() => {
                return Err(DriverError(format!("node {node} is already running")));
            }
            Some(driver) => {
                driver.advance_to(self.now)?;
                driver.revive()?;
            }
            None => {
                let mut driver = MemoryDriver::node(self.seed ^ mix(node.as_str()), self.epoch);
                driver.advance_to(self.now)?;
                driver.start(&config)?;
                self.nodes.insert(node.clone(), driver);
            }
        }
        self.bus.join(node);
        Ok(())
    }

    /// Every node's clock and the bus's move to `self.now`; what is due
    /// then happens, and everything moves until nothing does.
    fn tick(&mut self) -> Result<(), DriverError> {
        let now = self.now;
        self.bus.advance(now);
        for driver in self.nodes.values_mut() {
            driver.advance_to(now)?;
        }
        self.settle()
    }

    /// Moves everything until nothing moves.
    fn settle(&mut self) -> Result<(), DriverError> {
        let names: Vec<NodeName> = self.nodes.keys().cloned().collect();
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            for name in &names {
                let Some(driver) = self.nodes.get_mut(name).filter(|d| d.is_running()) else {
                    continue;
                };
                while let Some(external) = driver.take_external() {
                    moved = true;
                    match external {
                        External::Bus(request) => self.bus.request(name, request).map_err(bus)?,
                        External::Query(query) => {
                            let answer = self.bus.query(name, &query).map_err(bus)?;
                            driver.answer_query(answer)?;
                        }
                    }
                }
            }
            for name in &names {
                while let Some(event) = self.bus.next_event(name).map_err(bus)? {
                    moved = true;
                    self.running(name)?.handle_bus(event)?;
                }
            }
            if !moved {
                // Every node's maps agree with each other once the
                // cluster is quiet (the single server's invariants).
                for (name, driver) in &mut self.nodes {
                    if let Err(broken) = driver.check_invariants() {
                        return Err(DriverError(format!("node {name}: {broken}")));
                    }
                }
                return Ok(());
            }
        }
        Err(DriverError(format!(
            "the cluster did not settle in {MAX_ROUNDS} rounds"
        )))
    }
}

fn bus(error: BusError) -> DriverError {
    DriverError(error.to_string())
}

/// FNV-1a of a node's name: each node's chunking has its own seed.
fn mix(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Driver for MemoryClusterDriver {
    fn name(&self) -> &str {
        if self.replies_first {
            "memory-cluster (replies first)"
        } else {
            "memory-cluster"
        }
    }

    fn start(&mut self, _config: &Config) -> Result<(), DriverError> {
        Err(DriverError(
            "the memory cluster driver runs cluster transcripts (a `nodes` line first)".into(),
        ))
    }

    fn start_cluster(&mut self, config: &Config, nodes: &[NodeName]) -> Result<(), DriverError> {
        self.config = config.clone();
        let bus = MemoryBus::new(config.history_size);
        self.bus = if self.replies_first {
            bus.replies_first()
        } else {
            bus
        };
        self.nodes.clear();
        self.clients.clear();
        for node in nodes {
            self.start_node(node)?;
        }
        self.settle()
    }

    fn connect(
        &mut self,
        client: &str,
        _from: IpAddr,
        _dialect: Dialect,
    ) -> Result<(), DriverError> {
        Err(DriverError(format!(
            "{client}: in a cluster, a client connects to a node (connect NAME on NODE)"
        )))
    }

    fn connect_on(
        &mut self,
        client: &str,
        node: &NodeName,
        from: IpAddr,
        dialect: Dialect,
    ) -> Result<(), DriverError> {
        if let Some(old) = self.clients.get(client).cloned()
            && old != *node
            && let Some(driver) = self.nodes.get_mut(&old)
        {
            driver.forget(client);
        }
        self.running(node)?.connect(client, from, dialect)?;
        self.clients.insert(client.to_owned(), node.clone());
        self.settle()
    }

    fn send(&mut self, client: &str, bytes: &[u8]) -> Result<(), DriverError> {
        self.node_of(client)?.send(client, bytes)?;
        self.settle()
    }

    fn next_line(&mut self, client: &str) -> Result<Received, DriverError> {
        self.node_of(client)?.next_line(client)
    }

    fn close(&mut self, client: &str) -> Result<(), DriverError> {
        self.node_of(client)?.close(client)?;
        self.settle()
    }

    fn advance(&mut self, by: Duration) -> Result<(), DriverError> {
        let target = self.now + by;
        loop {
            // The earliest timer due on any node by then: every node's
            // clock moves to it, so what one node's timer makes it say
            // reaches the others at that time.
            let next = self
                .nodes
                .values()
                .filter_map(MemoryDriver::next_deadline)
                .chain(self.bus.next_deadline())
                .filter(|deadline| *deadline <= target)
                .min();
            let Some(next) = next else { break };
            self.now = self.now.max(next);
            self.tick()?;
        }
        self.now = target;
        self.tick()
    }

    fn restart(&mut self) -> Result<(), DriverError> {
        Err(DriverError(
            "restart: in a cluster, stop or kill a node and start it again".into(),
        ))
    }

    fn stop(&mut self) {
        for driver in self.nodes.values_mut() {
            driver.stop();
        }
        self.nodes.clear();
        self.clients.clear();
    }

    fn node_step(&mut self, step: NodeStep, node: &NodeName) -> Result<(), DriverError> {
        match step {
            NodeStep::Cut => self.bus.cut(node, true, self.now).map_err(bus)?,
            NodeStep::CutUnnoticed => self.bus.cut(node, false, self.now).map_err(bus)?,
            NodeStep::Heal => self.bus.heal(node).map_err(bus)?,
            NodeStep::Kill => {
                self.running(node)?.kill();
                self.bus.kill(node).map_err(bus)?;
            }
            NodeStep::Stop => {
                self.running(node)?.shut_down(STOP_REASON)?;
                // The bus carries out what the goodbye asked, then leaves.
                self.settle()?;
                self.running(node)?.kill();
                self.bus.leave(node).map_err(bus)?;
            }
            NodeStep::Start => self.start_node(node)?,
        }
        self.settle()
    }
}
