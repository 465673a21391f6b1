import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { NodeAgent } from '../../src/control/agent.js';
import { PROTOCOL_VERSION, tokenProof } from '../../src/control/protocol.js';
import { ControlService, type CoordinatorMessage, type NodeMessage } from '../../src/proto/gen/control.js';

/** A hand-driven coordinator on a real port, to check the node's side of the protocol. */
async function fakeCoordinator(script: (call: grpc.ServerDuplexStream<NodeMessage, CoordinatorMessage>, hello: NodeMessage) => void) {
  const server = new grpc.Server();
  server.addService(ControlService, {
    attach: (call: grpc.ServerDuplexStream<NodeMessage, CoordinatorMessage>) => {
      call.once('data', (m: NodeMessage) => script(call, m));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, close: () => server.forceShutdown() };
}

test('stale commands (older seq, other run) are dropped; current ones are handled', async () => {
  const pongs: number[] = [];
  const assigned: string[] = [];
  let stream!: grpc.ServerDuplexStream<NodeMessage, CoordinatorMessage>;
  const fake = await fakeCoordinator((call, hello) => {
    stream = call;
    call.on('data', (m: NodeMessage) => {
      if (m.pong) pongs.push(m.pong.pingId);
    });
    const base = { runId: 'run-A', sentAtMs: Date.now() };
    call.write({ ...base, seq: 10, welcome: { protocolVersion: PROTOCOL_VERSION, nodeId: 'worker 1 of 1', heartbeatMs: 1000, silenceTimeoutMs: 10_000, proof: tokenProof('tok', hello.hello!.nonce) } });
    call.write({ ...base, seq: 9, ping: { pingId: 1 } }); // older than the welcome: stale
    call.write({ ...base, runId: 'run-B', seq: 11, ping: { pingId: 2 } }); // another run: stale
    call.write({ ...base, seq: 12, ping: { pingId: 3 } });
    call.write({ ...base, seq: 12, ping: { pingId: 4 } }); // replayed seq: stale
    call.write({ ...base, seq: 13, assign: { role: 'worker', chunk: '1 of 1', scenarioJson: '{}', serverHost: 'h', serverPort: 1 } });
  });
  const logs: string[] = [];
  const agent = new NodeAgent({
    coordinator: { host: '127.0.0.1', port: fake.port },
    token: 'tok',
    role: 'worker',
    tls: {},
    fedsimVersion: 'test',
    log: (l) => logs.push(l),
    handlers: {
      assign: async (a) => {
        assigned.push(a.chunk);
        return {};
      },
      start: () => undefined,
      stop: () => undefined,
      clock: () => undefined,
      fault: () => undefined,
      pause: () => undefined,
    },
  });
  try {
    await agent.connect(5000);
    const t0 = Date.now();
    while ((pongs.length < 1 || assigned.length < 1) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(pongs, [3]);
    assert.deepEqual(assigned, ['1 of 1']);
    assert.equal(logs.filter((l) => l.includes('dropped a stale command')).length, 3, logs.join('\n'));
  } finally {
    stream?.end();
    agent.close();
    fake.close();
  }
});

test('a coordinator that cannot prove the token is refused by the node', async () => {
  const fake = await fakeCoordinator((call) => {
    call.write({ runId: 'r', seq: 1, sentAtMs: Date.now(), welcome: { protocolVersion: PROTOCOL_VERSION, nodeId: 'x', heartbeatMs: 1000, silenceTimeoutMs: 10_000, proof: Buffer.alloc(32) } });
  });
  const agent = new NodeAgent({
    coordinator: { host: '127.0.0.1', port: fake.port },
    token: 'tok',
    role: 'server',
    tls: {},
    fedsimVersion: 'test',
    log: () => undefined,
    handlers: { assign: async () => ({}), start: () => undefined, stop: () => undefined, clock: () => undefined, fault: () => undefined, pause: () => undefined },
  });
  try {
    await assert.rejects(agent.connect(5000), /failed the run-token check/);
  } finally {
    agent.close();
    fake.close();
  }
});
