// kafkajs against trailkeep serve, for tests/serve.rs:
//   node kafkajs.js BOOTSTRAP TOPIC GROUP N
// Produces N records (keys, headers) in one send with acks=-1, prints {"offset": N} for
// the first one, then consumes N records from the beginning with a consumer group
// (subscribe, commit), prints each as a JSON line with hex bytes like clients.py, and
// exits non-zero when something fails or takes over 30 s.
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, groupId, countText] = process.argv.slice(2);
const n = Number(countText);
const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'));

async function main() {
  const kafka = new Kafka({ clientId: 'trailkeep-test', brokers: [bootstrap], logLevel: logLevel.WARN, retry: { retries: 3 } });
  const producer = kafka.producer({ allowAutoTopicCreation: true });
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

  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    consumer
      .run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          got.push(message);
          await consumer.commitOffsets([{ topic, partition: 0, offset: String(Number(message.offset) + 1) }]);
          if (got.length >= n) resolve();
        },
      })
      .catch(reject);
  });
  for (const m of got.slice(0, n)) {
    const headers = Object.entries(m.headers || {}).map(([k, v]) => [k, hex(v)]);
    console.log(JSON.stringify({ offset: Number(m.offset), timestamp: Number(m.timestamp), key: hex(m.key), value: hex(m.value), headers }));
  }
  await consumer.disconnect();
}

const timer = setTimeout(() => { console.error('kafkajs: timed out'); process.exit(1); }, 30000);
main().then(() => { clearTimeout(timer); process.exit(0); }, (e) => { console.error(`kafkajs: ${e.stack || e}`); process.exit(1); });
