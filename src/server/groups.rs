//! The group coordinator: JoinGroup / SyncGroup / Heartbeat / LeaveGroup membership kept in
//! memory, and OffsetCommit / OffsetFetch on trailkeep's durable group cursors.
//!
//! Membership follows Kafka's classic protocol: a join starts a rebalance; the round ends
//! when every known member has rejoined (or the joiner's rebalance timeout, capped at
//! [`REBALANCE_WAIT_MAX_MS`], passes; members that did not rejoin are dropped); the leader
//! gets the member list and sends the assignment in SyncGroup. Members whose session times
//! out are dropped and the others rebalance. The assignment itself is the clients'
//! business (with one partition, one member gets it and the others none).
//!
//! **Invariant:** a committed offset is a trailkeep cursor commit (checksummed, fsync'd)
//! before OffsetCommit answers, so `trailkeep groups <topic>` shows it and a restart of the
//! server keeps it. Membership is not durable: after a restart members simply rejoin.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use parking_lot::Mutex;

use super::handlers::{code, error_code, name, str_bytes, to_offset};
use super::State;

/// Longest a JoinGroup waits for the other members to rejoin.
pub const REBALANCE_WAIT_MAX_MS: u64 = 15_000;
/// Session timeouts a JoinGroup may ask for (Kafka brokers' defaults of
/// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`); outside them it gets
/// INVALID_SESSION_TIMEOUT, so every member that stops heartbeating is dropped in time.
pub const SESSION_TIMEOUT_MIN_MS: i32 = 6_000;
pub const SESSION_TIMEOUT_MAX_MS: i32 = 1_800_000;
/// Members of all groups together. A JoinGroup that would add one more gets
/// COORDINATOR_NOT_AVAILABLE (clients retry; room frees as sessions end): every JoinGroup
/// without a member id creates a member that lives for its session timeout (up to
/// [`SESSION_TIMEOUT_MAX_MS`]), so without a bound a client looping on JoinGroup could
/// make the server hold any number of them.
pub const MEMBERS_MAX: usize = 10_000;
/// How often waiting joins and syncs look at the group again (they are also woken).
const GROUP_POLL_MS: u64 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

struct Member {
    protocols: Vec<(String, Bytes)>,
    group_instance_id: Option<String>,
    session_timeout: Duration,
    last_seen: Instant,
    joined: bool,
    assignment: Option<Bytes>,
}

struct Group {
    phase: Phase,
    generation: i32,
    protocol_type: String,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    round_deadline: Instant,
}

impl Group {
    fn new() -> Group {
        Group {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            round_deadline: Instant::now(),
        }
    }

    fn start_rebalance(&mut self, wait: Duration) {
        if self.phase != Phase::PreparingRebalance {
            self.phase = Phase::PreparingRebalance;
            self.round_deadline = Instant::now() + wait;
            for member in self.members.values_mut() {
                member.joined = false;
                member.assignment = None;
            }
        }
    }

    /// Ends the join round when everyone rejoined or its time is up.
    fn maybe_complete_round(&mut self, group_id: &str) {
        if self.phase != Phase::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.joined);
        if !all_joined && Instant::now() < self.round_deadline {
            return;
        }
        self.members.retain(|id, m| {
            if !m.joined {
                tracing::info!(group = group_id, member = id, "member did not rejoin in time; removed");
            }
            m.joined
        });
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.leader = None;
            return;
        }
        self.generation += 1;
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.protocol_name = self.choose_protocol();
        self.phase = Phase::CompletingRebalance;
        tracing::info!(
            group = group_id,
            generation = self.generation,
            members = self.members.len(),
            "group rebalanced"
        );
    }

    /// The leader's first protocol that every member supports.
    fn choose_protocol(&self) -> Option<String> {
        let leader = self.members.get(self.leader.as_ref()?)?;
        leader
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|n| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == *n)))
            .cloned()
    }

    fn remove(&mut self, member_id: &str, group_id: &str) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.leader = None;
        } else {
            self.start_rebalance(Duration::from_millis(REBALANCE_WAIT_MAX_MS));
            self.maybe_complete_round(group_id);
        }
        true
    }
}

/// Group membership of every group, in memory.
#[derive(Default)]
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    changed: tokio::sync::Notify,
    next_member: std::sync::atomic::AtomicU64,
}

impl Coordinator {
    async fn wait_change(&self) {
        tokio::select! {
            () = self.changed.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(GROUP_POLL_MS)) => {}
        }
    }

    pub async fn join(&self, request: JoinGroupRequest, client_id: &str) -> JoinGroupResponse {
        let group_id = request.group_id.0.to_string();
        let mut response = JoinGroupResponse::default();
        response.generation_id = -1;
        if crate::topic::validate_topic_name(&group_id).is_err() {
            tracing::warn!(
                group = group_id,
                "refusing JoinGroup: group ids use letters, digits, '.', '_' and '-'"
            );
            response.error_code = code::INVALID_GROUP_ID;
            return response;
        }
        let wait = Duration::from_millis(
            u64::try_from(request.rebalance_timeout_ms)
                .unwrap_or(0)
                .min(REBALANCE_WAIT_MAX_MS),
        );
        if !(SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&request.session_timeout_ms) {
            tracing::warn!(
                group = group_id,
                "refusing JoinGroup: session timeout {} ms is outside {SESSION_TIMEOUT_MIN_MS}..={SESSION_TIMEOUT_MAX_MS}",
                request.session_timeout_ms
            );
            response.error_code = code::INVALID_SESSION_TIMEOUT;
            return response;
        }
        let session_timeout = Duration::from_millis(request.session_timeout_ms.unsigned_abs().into());
        let member_id = {
            let mut groups = self.groups.lock();
            if request.member_id.is_empty() && groups.values().map(|g| g.members.len()).sum::<usize>() >= MEMBERS_MAX {
                tracing::warn!(
                    group = group_id,
                    "refusing JoinGroup: {MEMBERS_MAX} members in all groups already"
                );
                response.error_code = code::COORDINATOR_NOT_AVAILABLE;
                return response;
            }
            let group = groups.entry(group_id.clone()).or_insert_with(Group::new);
            if group.phase != Phase::Empty
                && !group.protocol_type.is_empty()
                && group.protocol_type != request.protocol_type.as_str()
            {
                response.error_code = code::INCONSISTENT_GROUP_PROTOCOL;
                return response;
            }
            let member_id = if request.member_id.is_empty() {
                let n = self.next_member.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let prefix = if client_id.is_empty() { "member" } else { client_id };
                format!("{prefix}-{n}-{}", crate::topic::now_us())
            } else if group.members.contains_key(request.member_id.as_str()) {
                request.member_id.to_string()
            } else {
                response.error_code = code::UNKNOWN_MEMBER_ID;
                return response;
            };
            group.protocol_type = request.protocol_type.to_string();
            group.start_rebalance(wait);
            group.members.insert(
                member_id.clone(),
                Member {
                    protocols: request
                        .protocols
                        .iter()
                        .map(|p| (p.name.to_string(), p.metadata.clone()))
                        .collect(),
                    group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
                    session_timeout,
                    last_seen: Instant::now(),
                    joined: true,
                    assignment: None,
                },
            );
            group.maybe_complete_round(&group_id);
            member_id
        };
        self.changed.notify_waiters();
        loop {
            {
                let mut groups = self.groups.lock();
                let Some(group) = groups.get_mut(&group_id) else {
                    response.error_code = code::UNKNOWN_MEMBER_ID;
                    return response;
                };
                group.maybe_complete_round(&group_id);
                let Some(member) = group.members.get_mut(&member_id) else {
                    response.error_code = code::UNKNOWN_MEMBER_ID;
                    return response;
                };
                member.last_seen = Instant::now();
                if group.phase != Phase::PreparingRebalance {
                    return join_response(group, &member_id, response);
                }
            }
            self.wait_change().await;
        }
    }

    pub async fn sync(&self, request: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        let mut response = SyncGroupResponse::default();
        {
            let mut groups = self.groups.lock();
            let Some(group) = groups.get_mut(&group_id) else {
                response.error_code = code::UNKNOWN_MEMBER_ID;
                return response;
            };
            if let Some(error) = check_member(group, &member_id, request.generation_id) {
                response.error_code = error;
                return response;
            }
            if group.phase == Phase::CompletingRebalance && group.leader.as_deref() == Some(member_id.as_str()) {
                for a in &request.assignments {
                    if let Some(m) = group.members.get_mut(a.member_id.as_str()) {
                        m.assignment = Some(a.assignment.clone());
                    }
                }
                group.phase = Phase::Stable;
            }
        }
        self.changed.notify_waiters();
        let deadline = Instant::now() + Duration::from_millis(REBALANCE_WAIT_MAX_MS);
        loop {
            {
                let mut groups = self.groups.lock();
                let Some(group) = groups.get_mut(&group_id) else {
                    response.error_code = code::UNKNOWN_MEMBER_ID;
                    return response;
                };
                if let Some(error) = check_member(group, &member_id, request.generation_id) {
                    response.error_code = error;
                    return response;
                }
                if group.phase == Phase::Stable {
                    if let Some(m) = group.members.get_mut(&member_id) {
                        m.last_seen = Instant::now();
                        response.assignment = m.assignment.clone().unwrap_or_default();
                    }
                    response.protocol_type = Some(str_bytes(&group.protocol_type));
                    response.protocol_name = group.protocol_name.as_deref().map(str_bytes);
                    return response;
                }
                if Instant::now() >= deadline {
                    response.error_code = code::REBALANCE_IN_PROGRESS;
                    return response;
                }
            }
            self.wait_change().await;
        }
    }

    pub fn heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        let mut response = HeartbeatResponse::default();
        let mut groups = self.groups.lock();
        let group_id = request.group_id.0.to_string();
        let Some(group) = groups.get_mut(&group_id) else {
            response.error_code = code::UNKNOWN_MEMBER_ID;
            return response;
        };
        group.maybe_complete_round(&group_id);
        let Some(member) = group.members.get_mut(request.member_id.as_str()) else {
            response.error_code = code::UNKNOWN_MEMBER_ID;
            return response;
        };
        member.last_seen = Instant::now();
        response.error_code = if group.phase == Phase::PreparingRebalance {
            code::REBALANCE_IN_PROGRESS
        } else if request.generation_id != group.generation {
            code::ILLEGAL_GENERATION
        } else {
            code::NONE
        };
        response
    }

    pub fn leave(&self, request: LeaveGroupRequest) -> LeaveGroupResponse {
        let group_id = request.group_id.0.to_string();
        let mut response = LeaveGroupResponse::default();
        let mut leaving: Vec<(String, Option<String>)> = request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect();
        if !request.member_id.is_empty() {
            leaving.push((request.member_id.to_string(), None));
        }
        {
            let mut groups = self.groups.lock();
            let group = groups.get_mut(&group_id);
            let mut group = group;
            for (member_id, instance) in leaving {
                let known = group.as_deref_mut().is_some_and(|g| g.remove(&member_id, &group_id));
                if known {
                    tracing::info!(group = group_id, member = member_id, "member left");
                }
                let mut m = MemberResponse::default();
                m.member_id = str_bytes(&member_id);
                m.group_instance_id = instance.as_deref().map(str_bytes);
                m.error_code = if known { code::NONE } else { code::UNKNOWN_MEMBER_ID };
                response.members.push(m);
            }
        }
        if request.members.is_empty() {
            response.error_code = response.members.first().map_or(code::NONE, |m| m.error_code);
            response.members.clear();
        }
        self.changed.notify_waiters();
        response
    }

    /// Drops members whose session timed out, and groups left without members; true when
    /// some members were dropped.
    ///
    /// An empty group is forgotten (its generation too), as a restart forgets them all: a
    /// group id used once costs nothing afterwards. Its committed offsets are trailkeep
    /// cursors and stay. A member of a forgotten group that commits later is treated as
    /// after a restart: with a new group of that id it is an unknown member, with none
    /// its commit passes (see [`Coordinator::commit_allowed`]).
    fn expire(&self) -> bool {
        let mut expired = false;
        let mut groups = self.groups.lock();
        for (group_id, group) in groups.iter_mut() {
            let now = Instant::now();
            let gone: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| now.duration_since(m.last_seen) > m.session_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                tracing::info!(group = group_id, member = id, "member session expired; removed");
                group.remove(&id, group_id);
                expired = true;
            }
            group.maybe_complete_round(group_id);
        }
        groups.retain(|_, group| !group.members.is_empty());
        expired
    }

    /// Generation check of OffsetCommit: -1 (a consumer outside any group) always passes,
    /// and so does a commit to a group the coordinator does not know (none after a
    /// restart, nor once the last member left): membership is not durable, and refusing
    /// would fail the first commit of every consumer after a restart. A member of the
    /// current generation may commit while the group prepares a rebalance (consumers
    /// commit what they processed as their partitions are revoked, before they rejoin);
    /// only between the join and the sync, when its generation is not yet its own, it gets
    /// REBALANCE_IN_PROGRESS, as Kafka's coordinator answers.
    fn commit_allowed(&self, group_id: &str, member_id: &str, generation: i32) -> i16 {
        if generation < 0 {
            return code::NONE;
        }
        let groups = self.groups.lock();
        match groups.get(group_id) {
            None => code::NONE,
            Some(group) if !group.members.contains_key(member_id) => code::UNKNOWN_MEMBER_ID,
            Some(group) if group.generation != generation => code::ILLEGAL_GENERATION,
            Some(group) if group.phase == Phase::CompletingRebalance => code::REBALANCE_IN_PROGRESS,
            Some(_) => code::NONE,
        }
    }
}

fn check_member(group: &Group, member_id: &str, generation: i32) -> Option<i16> {
    if !group.members.contains_key(member_id) {
        Some(code::UNKNOWN_MEMBER_ID)
    } else if group.phase == Phase::PreparingRebalance {
        Some(code::REBALANCE_IN_PROGRESS)
    } else if generation != group.generation {
        Some(code::ILLEGAL_GENERATION)
    } else {
        None
    }
}

fn join_response(group: &Group, member_id: &str, mut response: JoinGroupResponse) -> JoinGroupResponse {
    response.generation_id = group.generation;
    response.protocol_type = Some(str_bytes(&group.protocol_type));
    response.member_id = str_bytes(member_id);
    response.leader = str_bytes(group.leader.as_deref().unwrap_or_default());
    let Some(protocol) = group.protocol_name.clone() else {
        response.error_code = code::INCONSISTENT_GROUP_PROTOCOL;
        return response;
    };
    response.protocol_name = Some(str_bytes(&protocol));
    if group.leader.as_deref() == Some(member_id) {
        response.members = group
            .members
            .iter()
            .map(|(id, m)| {
                let mut r = JoinGroupResponseMember::default();
                r.member_id = str_bytes(id);
                r.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                r.metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                r
            })
            .collect();
    }
    response
}

/// Drops expired members every half second, for as long as the server runs.
pub(crate) async fn reap_expired(state: Arc<State>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if state.groups.expire() {
            state.groups.changed.notify_waiters();
        }
    }
}

pub(crate) async fn offset_commit(state: &Arc<State>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let allowed = state.groups.commit_allowed(
        &group_id,
        request.member_id.as_str(),
        request.generation_id_or_member_epoch,
    );
    let group_ok = crate::topic::validate_topic_name(&group_id).is_ok();
    if !group_ok {
        tracing::warn!(
            group = group_id,
            "refusing OffsetCommit: group ids use letters, digits, '.', '_' and '-'"
        );
    }
    let st = Arc::clone(state);
    let topics = tokio::task::spawn_blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let topic_name = t.name.0.to_string();
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut r = OffsetCommitResponsePartition::default();
                        r.partition_index = p.partition_index;
                        r.error_code = if !group_ok {
                            code::INVALID_GROUP_ID
                        } else if allowed != code::NONE {
                            allowed
                        } else if p.partition_index != 0 {
                            code::UNKNOWN_TOPIC_OR_PARTITION
                        } else {
                            commit(&st, &topic_name, &group_id, p.committed_offset)
                        };
                        r
                    })
                    .collect();
                let mut tr = OffsetCommitResponseTopic::default();
                tr.name = t.name;
                tr.partitions = partitions;
                tr
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    let mut response = OffsetCommitResponse::default();
    response.topics = topics;
    response
}

fn commit(state: &State, topic_name: &str, group_id: &str, offset: i64) -> i16 {
    let Some(offset) = to_offset(offset) else {
        return code::OFFSET_OUT_OF_RANGE;
    };
    let what = format!("commit of group {group_id:?} on {topic_name:?}");
    match state.store.topic(topic_name).and_then(|t| t.commit(group_id, offset)) {
        Ok(()) => {
            tracing::debug!(
                topic = topic_name,
                group = group_id,
                offset = offset.0,
                "offset committed"
            );
            code::NONE
        }
        Err(e) => error_code(&e, &what),
    }
}

/// (committed offset or -1, error) of `group_id` on `topic_name`.
fn committed(state: &State, topic_name: &str, group_id: &str) -> (i64, i16) {
    if crate::topic::validate_topic_name(group_id).is_err() {
        return (-1, code::NONE);
    }
    match state.store.topic(topic_name).and_then(|t| t.committed(group_id)) {
        Ok(offset) => (offset.map_or(-1, |o| o.0 as i64), code::NONE),
        Err(crate::Error::NoSuchTopic(_)) => (-1, code::NONE),
        Err(e) => (-1, error_code(&e, &format!("offset fetch of group {group_id:?}"))),
    }
}

pub(crate) async fn offset_fetch(
    state: &Arc<State>,
    request: OffsetFetchRequest,
    _version: i16,
) -> OffsetFetchResponse {
    let st = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let group_id = request.group_id.0.to_string();
        let wanted: Vec<(String, Vec<i32>)> = match request.topics {
            Some(topics) => topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect(),
            None => st
                .store
                .topic_names()
                .unwrap_or_default()
                .into_iter()
                .filter(|n| matches!(committed(&st, n, &group_id), (o, _) if o >= 0))
                .map(|n| (n, vec![0]))
                .collect(),
        };
        let mut response = OffsetFetchResponse::default();
        response.topics = wanted
            .into_iter()
            .map(|(topic_name, partitions)| {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = name(&topic_name);
                t.partitions = partitions
                    .into_iter()
                    .map(|index| {
                        let mut p = OffsetFetchResponsePartition::default();
                        p.partition_index = index;
                        p.metadata = Some(str_bytes(""));
                        (p.committed_offset, p.error_code) = if index == 0 {
                            committed(&st, &topic_name, &group_id)
                        } else {
                            (-1, code::UNKNOWN_TOPIC_OR_PARTITION)
                        };
                        p
                    })
                    .collect();
                t
            })
            .collect();
        response
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
