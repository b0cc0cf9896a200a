"""Drives trailkeep's Kafka server (or any broker) with a real Kafka client, for tests/serve.rs
and tests/mirror.rs.

    python clients.py ACTION CLIENT BOOTSTRAP TOPIC [ARGS...]

CLIENT is kafka-python or confluent. Records travel as JSON lines with hex bytes, so the Rust
tests compare exact bytes:
    {"offset": 3, "timestamp": 1700000000123, "key": "6b31" | null, "value": "...",
     "headers": [["name", "hex"], ...]}
Actions:
    produce              records (key, value, headers, optional timestamp) on stdin, one
                         produce + flush each; prints {"offset": N} per record, or
                         {"error": ...} for a record marked "expect_error": true
    produce CODEC        the same records compressed with CODEC, all produced before one
                         flush, so they travel as compressed batches
    idempotent           the same records from one idempotent producer (acks=all,
                         retries on), one produce + flush each, the next line read only
                         then: the server may be restarted between lines
    idempotent pipelined the same, all produced before one flush in small batches, up to
                         5 requests in flight
    consume N [GROUP]    reads N records (from the beginning, or from GROUP's committed
                         offset with subscribe(); commits after them), prints them
    offset_for_time MS   prints {"offset": N} (ListOffsets by timestamp; -1 when none)
    drain N              prints every record from the beginning: at least N, then until
                         1.5 s pass without one (kafka-python only)
    longpoll             starts at the end, prints {"ready": true}, then prints the first
                         record that arrives (waits up to 20 s)
    member GROUP [MS]    TOPIC is a comma-separated list: a member of consumer group GROUP
                         subscribed to those topics (roundrobin assignor, session timeout
                         MS, default 6000, heartbeat 0.5 s, no auto-commit) until told to
                         stop; for tests/serve_groups.rs. Prints {"assigned": [topic, ...]} (sorted)
                         after every rebalance, {"record": {"topic": T, "offset": N, ...}}
                         for each record, then commits N + 1 synchronously and prints
                         {"committed": [T, N + 1]}. Stdin commands, one a line: "pause"
                         pauses every assigned partition and prints {"paused": [topic, ...]};
                         "close" (or end of input) closes the consumer, which leaves the
                         group, and prints {"closed": true}. A failed commit prints
                         {"commit_failed": [T, N + 1, reason]}. Runs at most 120 s.
Exits non-zero, with the reason on stderr, when an expectation fails or a wait times out.
"""
import json
import sys
import time

DEADLINE_S = 20


def hexb(b):
    return None if b is None else bytes(b).hex()


def unhex(s):
    return None if s is None else bytes.fromhex(s)


def out(obj):
    print(json.dumps(obj), flush=True)


def fail(msg):
    print(msg, file=sys.stderr, flush=True)
    sys.exit(1)


def as_json(offset, timestamp, key, value, headers):
    return {
        "offset": offset,
        "timestamp": timestamp,
        "key": hexb(key),
        "value": hexb(value),
        "headers": [[k if isinstance(k, str) else k.decode(), hexb(v)] for k, v in (headers or [])],
    }


# ---------------------------------------------------------------- kafka-python
def kp_fields(r):
    return {
        "key": unhex(r.get("key")),
        "value": unhex(r["value"]),
        "headers": [(k, unhex(v)) for k, v in r.get("headers", [])],
        "timestamp_ms": r.get("timestamp"),
    }


def kp_produce(bootstrap, topic, codec=None):
    from kafka import KafkaProducer

    config = {"bootstrap_servers": bootstrap, "acks": "all", "retries": 0, "request_timeout_ms": 10000}
    if codec is not None:
        p = KafkaProducer(**config, compression_type=codec, linger_ms=1000)
        futures = [p.send(topic, **kp_fields(json.loads(line))) for line in sys.stdin]
        p.flush()
        for fut in futures:
            out({"offset": fut.get(timeout=10).offset})
        p.close()
        return
    p = KafkaProducer(**config)
    for line in sys.stdin:
        r = json.loads(line)
        fut = p.send(topic, **kp_fields(r))
        p.flush()
        try:
            out({"offset": fut.get(timeout=10).offset})
        except Exception as e:  # the broker refused it
            if not r.get("expect_error"):
                raise
            out({"error": type(e).__name__ + ": " + str(e)})
    p.close()


def kp_produce_idempotent(bootstrap, topic, mode=None):
    from kafka import KafkaProducer

    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,
        request_timeout_ms=10000,
        retry_backoff_ms=100,
        reconnect_backoff_ms=50,
        # Small batches, so a pipelined run sends many requests, several in flight.
        batch_size=256,
        linger_ms=5,
    )
    if mode == "pipelined":
        futures = [p.send(topic, **kp_fields(json.loads(line))) for line in sys.stdin]
        p.flush()
        for fut in futures:
            out({"offset": fut.get(timeout=30).offset})
    else:
        for line in sys.stdin:
            fut = p.send(topic, **kp_fields(json.loads(line)))
            p.flush()
            out({"offset": fut.get(timeout=30).offset})
    p.close()


def kp_consumer(bootstrap, group):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )


def kp_consume(bootstrap, topic, n, group):
    from kafka import TopicPartition

    c = kp_consumer(bootstrap, group)
    if group:
        c.subscribe([topic])
    else:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
    got = []
    end = time.time() + DEADLINE_S
    while len(got) < n and time.time() < end:
        for _, msgs in c.poll(timeout_ms=500, max_records=n - len(got)).items():
            got.extend(msgs)
    if len(got) < n:
        fail(f"kafka-python consumed {len(got)} of {n} records from {topic}")
    for m in got:
        out(as_json(m.offset, m.timestamp, m.key, m.value, m.headers))
    if group:
        c.commit()
    c.close()


def kp_offset_for_time(bootstrap, topic, ms):
    from kafka import TopicPartition

    c = kp_consumer(bootstrap, None)
    tp = TopicPartition(topic, 0)
    found = c.offsets_for_times({tp: ms})[tp]
    out({"offset": -1 if found is None else found.offset})
    c.close()


def kp_drain(bootstrap, topic, at_least):
    """Everything from the beginning: at least `at_least` records, then until 1.5 s pass
    without a new one (some brokers' ListOffsets cannot be trusted for the end)."""
    from kafka import TopicPartition

    c = kp_consumer(bootstrap, None)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    end = time.time() + 60
    idle_since = time.time()
    while time.time() < end:
        batch = c.poll(timeout_ms=300)
        for _, msgs in batch.items():
            got.extend(msgs)
        if batch:
            idle_since = time.time()
        elif len(got) >= at_least and time.time() - idle_since > 1.5:
            break
    if len(got) < at_least:
        fail(f"kafka-python drained {len(got)} records from {topic}, expected at least {at_least}")
    for m in got:
        out(as_json(m.offset, m.timestamp, m.key, m.value, m.headers))
    c.close()


def kp_longpoll(bootstrap, topic):
    from kafka import TopicPartition

    c = kp_consumer(bootstrap, None)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_end(tp)
    c.position(tp)
    out({"ready": True})
    end = time.time() + DEADLINE_S
    while time.time() < end:
        for _, msgs in c.poll(timeout_ms=1000, max_records=1).items():
            m = msgs[0]
            out(as_json(m.offset, m.timestamp, m.key, m.value, m.headers))
            c.close()
            return
    fail("kafka-python long poll: nothing arrived")


# ---------------------------------------------------------------- confluent-kafka
def ck_fields(r):
    fields = {
        "key": unhex(r.get("key")),
        "value": unhex(r["value"]),
        "headers": [(k, unhex(v)) for k, v in r.get("headers", [])],
    }
    if r.get("timestamp") is not None:
        fields["timestamp"] = r["timestamp"]
    return fields


def ck_produce(bootstrap, topic, codec=None):
    from confluent_kafka import Producer

    config = {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 10000, "retries": 0}
    if codec is not None:
        return ck_produce_compressed(Producer({**config, "compression.type": codec, "linger.ms": 1000}), topic)
    p = Producer(config)
    for line in sys.stdin:
        r = json.loads(line)
        result = {}

        def done(err, msg):
            result["err"], result["msg"] = err, msg

        p.produce(topic, on_delivery=done, **ck_fields(r))
        p.flush(10)
        if r.get("expect_error") and result.get("err") is not None:
            out({"error": str(result["err"])})
            continue
        if result.get("err") is not None or "msg" not in result:
            fail(f"confluent produce failed: {result.get('err')}")
        out({"offset": result["msg"].offset()})


def ck_produce_compressed(p, topic):
    results = []
    for line in sys.stdin:
        r = json.loads(line)
        slot = {}
        results.append(slot)
        p.produce(topic, on_delivery=lambda err, msg, slot=slot: slot.update(err=err, msg=msg), **ck_fields(r))
    p.flush(10)
    for slot in results:
        if slot.get("err") is not None or "msg" not in slot:
            fail(f"confluent compressed produce failed: {slot.get('err')}")
        out({"offset": slot["msg"].offset()})


def ck_produce_idempotent(bootstrap, topic, mode=None):
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": 5,
            "message.timeout.ms": 30000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 50,
            # Small batches, so a pipelined run sends many requests, several in flight.
            "batch.size": 256,
            "linger.ms": 5,
        }
    )
    slots = []

    def produce(line):
        slot = {}
        slots.append(slot)
        p.produce(topic, on_delivery=lambda err, msg, slot=slot: slot.update(err=err, msg=msg), **ck_fields(json.loads(line)))

    def report(slot):
        if slot.get("err") is not None or "msg" not in slot:
            fail(f"confluent idempotent produce failed: {slot.get('err')}")
        out({"offset": slot["msg"].offset()})

    if mode == "pipelined":
        for line in sys.stdin:
            produce(line)
        p.flush(30)
        for slot in slots:
            report(slot)
    else:
        for line in sys.stdin:
            produce(line)
            p.flush(30)
            report(slots[-1])


def ck_consumer(bootstrap, group):
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or "trailkeep-test-unused",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 200,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
        }
    )


def ck_record(m):
    return as_json(m.offset(), m.timestamp()[1], m.key(), m.value(), m.headers())


def ck_consume(bootstrap, topic, n, group):
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    c = ck_consumer(bootstrap, group)
    if group:
        c.subscribe([topic])
    else:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    end = time.time() + DEADLINE_S
    while len(got) < n and time.time() < end:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail(f"confluent consume error: {m.error()}")
        got.append(m)
    if len(got) < n:
        fail(f"confluent consumed {len(got)} of {n} records from {topic}")
    for m in got:
        out(ck_record(m))
    if group:
        c.commit(asynchronous=False)
    c.close()


def ck_offset_for_time(bootstrap, topic, ms):
    from confluent_kafka import TopicPartition

    c = ck_consumer(bootstrap, None)
    found = c.offsets_for_times([TopicPartition(topic, 0, ms)], timeout=10)[0]
    if found.error:
        fail(f"confluent offsets_for_times: {found.error}")
    out({"offset": found.offset})
    c.close()


def ck_longpoll(bootstrap, topic):
    from confluent_kafka import OFFSET_END, TopicPartition

    c = ck_consumer(bootstrap, None)
    c.assign([TopicPartition(topic, 0, OFFSET_END)])
    # Fetches start once the assignment is resolved; the first poll resolves it.
    c.poll(0.5)
    out({"ready": True})
    end = time.time() + DEADLINE_S
    while time.time() < end:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            fail(f"confluent long poll error: {m.error()}")
        out(ck_record(m))
        c.close()
        return
    fail("confluent long poll: nothing arrived")


# ---------------------------------------------------------------- group members
MEMBER_RUN_S_MAX = 120
MEMBER_SESSION_TIMEOUT_MS = 6000
MEMBER_HEARTBEAT_MS = 500


def stdin_commands():
    """A queue of stdin's lines ("close" at end of input), read by a daemon thread so the
    poll loop never blocks on stdin."""
    import queue
    import threading

    commands = queue.Queue()

    def read():
        for line in sys.stdin:
            if line.strip():
                commands.put(line.strip())
        commands.put("close")

    threading.Thread(target=read, daemon=True).start()
    return commands


def member_loop(poll_records, commit, pause, close):
    """The member's main loop: runs stdin commands between polls; each record is printed,
    then committed before the next one is looked at."""
    import queue

    commands = stdin_commands()
    end = time.time() + MEMBER_RUN_S_MAX
    while time.time() < end:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            command = None
        if command == "pause":
            out({"paused": pause()})
        elif command == "close":
            close()
            out({"closed": True})
            return
        elif command is not None:
            fail(f"member: unknown command {command!r}")
        for topic, record in poll_records():
            out({"record": {"topic": topic, **record}})
            error = commit(topic, record["offset"] + 1)
            if error is None:
                out({"committed": [topic, record["offset"] + 1]})
            else:
                out({"commit_failed": [topic, record["offset"] + 1, error]})
    fail(f"member: still running after {MEMBER_RUN_S_MAX} s")


def kp_member(bootstrap, topics, group, session_ms=MEMBER_SESSION_TIMEOUT_MS):
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.structs import OffsetAndMetadata

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=MEMBER_HEARTBEAT_MS,
        partition_assignment_strategy=[RoundRobinPartitionAssignor],
    )

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            out({"assigned": sorted(tp.topic for tp in assigned)})

    c.subscribe(topics, listener=Listener())

    def poll_records():
        for tp, msgs in c.poll(timeout_ms=200).items():
            for m in msgs:
                yield tp.topic, as_json(m.offset, m.timestamp, m.key, m.value, m.headers)

    def commit(topic, offset):
        try:
            c.commit({TopicPartition(topic, 0): OffsetAndMetadata(offset, "", -1)})
            return None
        except Exception as e:  # the coordinator refused it
            return type(e).__name__ + ": " + str(e)

    def pause():
        assigned = list(c.assignment())
        c.pause(*assigned)
        return sorted(tp.topic for tp in assigned)

    member_loop(poll_records, commit, pause, c.close)


def ck_member(bootstrap, topics, group, session_ms=MEMBER_SESSION_TIMEOUT_MS):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 200,
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": MEMBER_HEARTBEAT_MS,
            "partition.assignment.strategy": "roundrobin",
        }
    )

    def on_assign(consumer, partitions):
        out({"assigned": sorted(tp.topic for tp in partitions)})

    c.subscribe(topics, on_assign=on_assign)

    def poll_records():
        m = c.poll(0.2)
        if m is None:
            return
        if m.error():
            fail(f"confluent member: {m.error()}")
        yield m.topic(), ck_record(m)

    def commit(topic, offset):
        try:
            for tp in c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False):
                if tp.error is not None:
                    return str(tp.error)
            return None
        except Exception as e:  # the coordinator refused it
            return type(e).__name__ + ": " + str(e)

    def pause():
        assigned = c.assignment()
        c.pause(assigned)
        return sorted(tp.topic for tp in assigned)

    member_loop(poll_records, commit, pause, c.close)


ACTIONS = {
    "kafka-python": {"drain": kp_drain, "produce": kp_produce, "idempotent": kp_produce_idempotent, "consume": kp_consume, "offset_for_time": kp_offset_for_time, "longpoll": kp_longpoll, "member": kp_member},
    "confluent": {"produce": ck_produce, "idempotent": ck_produce_idempotent, "consume": ck_consume, "offset_for_time": ck_offset_for_time, "longpoll": ck_longpoll, "member": ck_member},
}


def main():
    action, client, bootstrap, topic, *rest = sys.argv[1:]
    fn = ACTIONS[client][action]
    if action == "member":
        fn(bootstrap, topic.split(","), rest[0], *map(int, rest[1:2]))
    elif action == "consume":
        fn(bootstrap, topic, int(rest[0]), rest[1] if len(rest) > 1 else None)
    elif action in ("offset_for_time", "drain"):
        fn(bootstrap, topic, int(rest[0]))
    elif action in ("produce", "idempotent") and rest:
        fn(bootstrap, topic, rest[0])
    else:
        fn(bootstrap, topic)


if __name__ == "__main__":
    main()
