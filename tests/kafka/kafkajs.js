// kafkajs against trailkeep serve, for tests/serve.rs:
//   node kafkajs.js roundtrip BOOTSTRAP TOPIC GROUP N
//     Produces N records (keys, headers) in one send with acks=-1, prints {"offset": N} for
//     the first one, then consumes N records from the beginning with a consumer group
//     (subscribe, commit) and prints each as a JSON line with hex bytes like clients.py.
//   node kafkajs.js idempotent BOOTSTRAP TOPIC,TOPIC,... GROUP ROUNDS
//     An idempotent producer (idempotent: true, maxInFlightRequests: 1 as kafkajs requires,
//     acks=-1). Each round sends, at once, one sendBatch to every topic and one send to the
//     first topic, each call with 1-4 records; rounds follow each other. Prints every
//     partition's ack as {"ack": {"topic", "offset", "call", "round", "count"}}, then
//     consumes every record of every topic with a consumer group and prints each as
//     {"topic", "offset", "key", "value", "headers"} (hex bytes).
//   node kafkajs.js idempotent-lines BOOTSTRAP TOPIC
//     The idempotent producer sends each record of stdin (JSON lines as clients.py reads
//     them) alone and prints {"offset": N} for it before reading the next.
//   node kafkajs.js member BOOTSTRAP TOPIC,TOPIC,... GROUP [SESSION_MS]
//     A member of consumer group GROUP (kafkajs's round-robin assigner, session timeout
//     SESSION_MS, default 6000, heartbeat 0.5 s, no auto-commit) until told to stop, for
//     tests/serve_groups.rs, with clients.py's member protocol: prints {"assigned":
//     [topic, ...]} (sorted) after every rebalance, {"record": {"topic": T, "offset": N, ...}} for each record, then
//     commits N + 1 and prints {"committed": [T, N + 1]} ({"commit_failed": [T, N + 1,
//     reason]} when refused). Stdin commands, one a line: "pause" pauses every subscribed
//     topic and prints {"paused": [topic, ...]} (the assigned ones); "close" (or end of
//     input) disconnects, which leaves the group, and prints {"closed": true}.
// Exits non-zero when something fails or takes over 30 s (a member: 120 s).
const { Kafka, logLevel } = require('kafkajs');

const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'));
// The whole run, so that a hung client fails the test instead of hanging it.
const RUN_MS_MAX = 30000;

// `retry` for every part of the client; kafkajs's own default when undefined.
function kafka(bootstrap, retry) {
  return new Kafka({ clientId: 'trailkeep-test', brokers: [bootstrap], logLevel: logLevel.WARN, retry });
}

// Consumes `n` records of `topics` from the beginning with group `groupId`, committing each.
async function consumeAll(client, topics, groupId, n) {
  const consumer = client.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 200 });
  await consumer.connect();
  for (const topic of topics) {
    await consumer.subscribe({ topic, fromBeginning: true });
  }
  const got = [];
  await new Promise((resolve, reject) => {
    consumer
      .run({
        autoCommit: false,
        eachMessage: async ({ topic, partition, message }) => {
          got.push({ topic, message });
          await consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }]);
          if (got.length >= n) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return got;
}

// A record as clients.py prints it.
function asJson(m) {
  const headers = Object.entries(m.headers || {}).map(([k, v]) => [k, hex(v)]);
  return { offset: Number(m.offset), timestamp: Number(m.timestamp), key: hex(m.key), value: hex(m.value), headers };
}

async function roundtrip(bootstrap, topic, groupId, n) {
  const client = kafka(bootstrap, { retries: 3 });
  const producer = client.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < n; i++) {
    messages.push({
      key: i % 3 === 2 ? null : `js-key-${i}`,
      value: Buffer.from(`{"js":${i}}`),
      headers: i % 2 === 0 ? { agent: `a${i}`, empty: '' } : {},
      timestamp: String(1700000000000 + i),
    });
  }
  const sent = await producer.send({ topic, acks: -1, messages });
  console.log(JSON.stringify({ offset: Number(sent[0].baseOffset) }));
  await producer.disconnect();
  for (const { message } of (await consumeAll(client, [topic], groupId, n)).slice(0, n)) {
    console.log(JSON.stringify(asJson(message)));
  }
}

// The records of one call: the value names topic, round, call and index, so the test can
// tell each record's place; keys (one null) and headers vary.
function messagesOf(topic, round, call, count) {
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push({
      key: i === 1 ? null : `${topic}/${round}/${call}/${i}`,
      value: Buffer.from(JSON.stringify({ topic, round, call, i })),
      headers: i % 2 === 0 ? { round: String(round), bin: Buffer.from([0, 255, i]) } : {},
    });
  }
  return out;
}

async function idempotent(bootstrap, topicList, groupId, rounds) {
  const topics = topicList.split(',');
  // No retry limit: kafkajs warns that a limit may break idempotence; RUN_MS_MAX bounds
  // the run instead.
  const client = kafka(bootstrap, undefined);
  // kafkajs keeps one sequence per partition and requires one request in flight for
  // idempotence; it retries without limit by default.
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: true });
  await producer.connect();
  let total = 0;
  const report = (acks, round, call, counts) => {
    for (const ack of acks) {
      const count = counts[ack.topicName];
      total += count;
      console.log(JSON.stringify({ ack: { topic: ack.topicName, offset: Number(ack.baseOffset), call, round, count } }));
    }
  };
  for (let round = 0; round < rounds; round++) {
    const counts = {};
    const topicMessages = topics.map((topic, t) => {
      counts[topic] = 1 + ((round + t) % 4);
      return { topic, messages: messagesOf(topic, round, 'batch', counts[topic]) };
    });
    const single = { [topics[0]]: 1 + (round % 3) };
    const [batchAcks, singleAcks] = await Promise.all([
      producer.sendBatch({ acks: -1, topicMessages }),
      producer.send({ topic: topics[0], acks: -1, messages: messagesOf(topics[0], round, 'single', single[topics[0]]) }),
    ]);
    report(batchAcks, round, 'batch', counts);
    report(singleAcks, round, 'single', single);
  }
  await producer.disconnect();
  for (const { topic, message } of await consumeAll(client, topics, groupId, total)) {
    console.log(JSON.stringify({ topic, ...asJson(message) }));
  }
}

// Records from stdin, one JSON object a line as tests/kafka/support.rs `sample_records`
// writes them (hex key, value and header values, a timestamp), each sent alone by an
// idempotent producer and acknowledged with {"offset": N} before the next line is read.
async function idempotentLines(bootstrap, topic) {
  const client = kafka(bootstrap, undefined);
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: true });
  await producer.connect();
  const unhex = (h) => (h === null ? null : Buffer.from(h, 'hex'));
  const lines = require('readline').createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const r = JSON.parse(line);
    const headers = {};
    for (const [name, value] of r.headers) headers[name] = unhex(value);
    const message = { key: unhex(r.key), value: unhex(r.value), headers, timestamp: String(r.timestamp) };
    const [ack] = await producer.send({ topic, acks: -1, messages: [message] });
    console.log(JSON.stringify({ offset: Number(ack.baseOffset) }));
  }
  await producer.disconnect();
}

// A group member driven by stdin commands (see the header).
async function member(bootstrap, topicList, groupId, sessionTimeout) {
  const topics = topicList.split(',');
  const print = (obj) => console.log(JSON.stringify(obj));
  const client = kafka(bootstrap, { retries: 10 });
  const consumer = client.consumer({ groupId, sessionTimeout, heartbeatInterval: 500, maxWaitTimeInMs: 200 });
  let assigned = [];
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    assigned = Object.keys(payload.memberAssignment).filter((t) => payload.memberAssignment[t].length > 0).sort();
    print({ assigned });
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      const next = Number(message.offset) + 1;
      print({ record: { topic, ...asJson(message) } });
      try {
        await consumer.commitOffsets([{ topic, partition, offset: String(next) }]);
        print({ committed: [topic, next] });
      } catch (e) {
        print({ commit_failed: [topic, next, String(e)] });
      }
    },
  });
  const lines = require('readline').createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = line.trim();
    if (command === 'pause') {
      consumer.pause(topics.map((topic) => ({ topic })));
      print({ paused: assigned });
    } else if (command === 'close') {
      break;
    } else if (command !== '') {
      throw new Error(`member: unknown command ${command}`);
    }
  }
  await consumer.disconnect();
  print({ closed: true });
}

async function main() {
  const [mode, bootstrap, topics, groupId, countText] = process.argv.slice(2);
  const n = Number(countText);
  if (mode === 'roundtrip') {
    await roundtrip(bootstrap, topics, groupId, n);
  } else if (mode === 'idempotent') {
    await idempotent(bootstrap, topics, groupId, n);
  } else if (mode === 'member') {
    await member(bootstrap, topics, groupId, countText === undefined ? 6000 : n);
  } else if (mode === 'idempotent-lines') {
    await idempotentLines(bootstrap, topics);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}

// A member runs for as long as its test drives it.
const MEMBER_RUN_MS_MAX = 120000;
const runMsMax = process.argv[2] === 'member' ? MEMBER_RUN_MS_MAX : RUN_MS_MAX;
const timer = setTimeout(() => { console.error('kafkajs: timed out'); process.exit(1); }, runMsMax);
main().then(() => { clearTimeout(timer); process.exit(0); }, (e) => { console.error(`kafkajs: ${e.stack || e}`); process.exit(1); });
