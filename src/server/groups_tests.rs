use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::GroupId;

use super::*;
use crate::server::block_on;

fn join_request(group: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_member_id(str_bytes(member_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(1_000)
        .with_protocol_type(str_bytes("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(str_bytes("range"))])
}

/// Joins `group` as a new member alone in it; returns (error, member id, generation).
fn join(coordinator: &Coordinator, group: &str, member_id: &str) -> (i16, String, i32) {
    let response = block_on(coordinator.join(join_request(group, member_id), "test"));
    (
        response.error_code,
        response.member_id.to_string(),
        response.generation_id,
    )
}

fn leave(coordinator: &Coordinator, group: &str, member_id: &str) -> i16 {
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_members(vec![MemberIdentity::default().with_member_id(str_bytes(member_id))]);
    coordinator.leave(request).members[0].error_code
}

fn group_count(coordinator: &Coordinator) -> usize {
    coordinator.groups.lock().len()
}

#[test]
fn a_group_left_empty_is_forgotten_and_starts_over() {
    let coordinator = Coordinator::default();
    let (error, member, generation) = join(&coordinator, "g", "");
    assert_eq!((error, generation), (code::NONE, 1));
    coordinator.expire();
    assert_eq!(group_count(&coordinator), 1, "a group with a member stays");

    assert_eq!(leave(&coordinator, "g", &member), code::NONE);
    coordinator.expire();
    assert_eq!(group_count(&coordinator), 0, "the empty group is gone");
    // As after a restart: the old member's commit to a group nobody is in passes...
    assert_eq!(coordinator.commit_allowed("g", &member, generation), code::NONE);
    // ...and a group of that id made again starts from generation 1, without it.
    let (error, again, generation) = join(&coordinator, "g", "");
    assert_eq!((error, generation), (code::NONE, 1));
    assert_ne!(again, member);
    assert_eq!(
        coordinator.commit_allowed("g", &member, generation),
        code::UNKNOWN_MEMBER_ID
    );
    // Once synced, the new member commits.
    coordinator.groups.lock().get_mut("g").unwrap().phase = Phase::Stable;
    assert_eq!(coordinator.commit_allowed("g", &again, generation), code::NONE);
}

/// Kafka's rule: a member of the current generation commits while the group prepares a
/// rebalance (the commit of a consumer whose partitions are being revoked); between join
/// and sync it gets REBALANCE_IN_PROGRESS.
#[test]
fn a_member_commits_while_the_group_prepares_a_rebalance() {
    let coordinator = Coordinator::default();
    let (error, member, generation) = join(&coordinator, "g", "");
    assert_eq!(error, code::NONE);
    let set_phase = |phase| coordinator.groups.lock().get_mut("g").unwrap().phase = phase;
    assert_eq!(
        coordinator.commit_allowed("g", &member, generation),
        code::REBALANCE_IN_PROGRESS,
        "joined, not synced"
    );
    for phase in [Phase::Stable, Phase::PreparingRebalance] {
        set_phase(phase);
        assert_eq!(coordinator.commit_allowed("g", &member, generation), code::NONE);
        assert_eq!(
            coordinator.commit_allowed("g", &member, generation - 1),
            code::ILLEGAL_GENERATION
        );
    }
}

#[test]
fn a_join_that_fails_leaves_no_group_behind() {
    let coordinator = Coordinator::default();
    let (error, _, _) = join(&coordinator, "g", "no-such-member");
    assert_eq!(error, code::UNKNOWN_MEMBER_ID);
    coordinator.expire();
    assert_eq!(group_count(&coordinator), 0);
}

#[test]
fn members_over_all_groups_are_bounded() {
    let coordinator = Coordinator::default();
    let mut first = None;
    for i in 0..MEMBERS_MAX {
        let (error, member, _) = join(&coordinator, &format!("g{i}"), "");
        assert_eq!(error, code::NONE, "join {i}");
        first.get_or_insert(member);
    }
    let first = first.unwrap();
    let (error, _, generation) = join(&coordinator, "one-more", "");
    assert_eq!((error, generation), (code::COORDINATOR_NOT_AVAILABLE, -1));
    let (error, _, _) = join(&coordinator, "g1", "");
    assert_eq!(
        error,
        code::COORDINATOR_NOT_AVAILABLE,
        "a new member of a known group too"
    );
    coordinator.expire();
    assert_eq!(
        group_count(&coordinator),
        MEMBERS_MAX,
        "the refused joins left no group"
    );

    // A member already in may rejoin; once one leaves, there is room again.
    let (error, rejoined, _) = join(&coordinator, "g0", &first);
    assert_eq!((error, rejoined.as_str()), (code::NONE, first.as_str()));
    assert_eq!(leave(&coordinator, "g0", &first), code::NONE);
    let (error, _, _) = join(&coordinator, "one-more", "");
    assert_eq!(error, code::NONE);
}
