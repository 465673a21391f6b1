import { Box, Text } from 'ink';
import type { WorkerState } from '../sim/workerStats.js';
import { type ChunkRow, type FaultRow, type NodeRow, type ScreenModel, barCells, fmtDuration, fmtMs, sparkline } from './model.js';

/** Every component takes props only; the adapter (sink.tsx) is the one place that reads the store. */

export const STATE_STYLE: Record<WorkerState, { color: string; char: string }> = {
  idle: { color: 'gray', char: '.' },
  registering: { color: 'blue', char: 'g' },
  fetching: { color: 'blueBright', char: 'f' },
  training: { color: 'yellow', char: 'T' },
  sending: { color: 'magenta', char: 'S' },
  waiting: { color: 'white', char: 'W' },
  receiving: { color: 'cyan', char: 'R' },
  retrying: { color: '#ff8800', char: '!' },
  cut: { color: 'red', char: 'X' },
  failed: { color: '#aa0000', char: 'F' },
  done: { color: 'green', char: '#' },
};

/** The states a person watches; idle and fetching are brief and show only in the bar. */
const LEGEND: WorkerState[] = ['registering', 'training', 'sending', 'waiting', 'receiving', 'retrying', 'cut', 'failed', 'done'];

const pad = (s: string, n: number) => (s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length));
const lpad = (s: string, n: number) => (s.length >= n ? s.slice(0, n) : ' '.repeat(n - s.length) + s);

function Bar({ cells, total, color }: { cells: number; total: number; color: boolean }) {
  const filled = total > 0 ? Math.round(cells * total) : 0;
  return (
    <Text>
      <Text color={color ? 'green' : undefined}>{'█'.repeat(filled)}</Text>
      <Text color={color ? 'gray' : undefined}>{(color ? '░' : '.').repeat(Math.max(0, cells - filled))}</Text>
    </Text>
  );
}

export function Header({ m }: { m: ScreenModel }) {
  const frac = m.rounds > 0 ? Math.min(1, (m.round - (m.phase === 'running' ? 1 : 0)) / m.rounds) : 0;
  const barW = Math.max(10, Math.min(30, m.width - 70));
  const status = m.paused ? ' PAUSED' : m.phase === 'running' ? '' : ` ${m.phase}`;
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">
        <Text bold>fedsim</Text> {m.name} · {m.transport} · {m.payload} · round {m.round}/{m.rounds} <Bar cells={barW} total={frac} color={m.color} />{' '}
        {Math.round(frac * 100)}% · {fmtDuration(m.elapsedMs)}
        <Text color={m.color ? 'yellow' : undefined} bold>
          {status}
        </Text>
      </Text>
      <Text wrap="truncate">
        rounds last {fmtMs(m.lastRoundMs)} p95 {fmtMs(m.p95RoundMs)} · prop. p99 {fmtMs(m.propagationP99Ms)} · {Math.round(m.messagesPerSec)} msg/s ·{' '}
        {m.mbPerSec.toFixed(2)} MB/s · errors <Text color={m.color && m.errors > 0 ? 'red' : undefined}>{m.errors}</Text>
      </Text>
    </Box>
  );
}

function StateBar({ row, width, color }: { row: ChunkRow; width: number; color: boolean }) {
  const cells = barCells(row.states, row.workers, width);
  if (cells.length === 0) return <Text>{' '.repeat(width)}</Text>;
  return (
    <Text>
      {cells.map(([s, n]) => (
        <Text key={s} color={color ? STATE_STYLE[s].color : undefined}>
          {(color ? '█' : STATE_STYLE[s].char).repeat(n)}
        </Text>
      ))}
    </Text>
  );
}

/** The state bar takes what the other chunk columns leave. */
export const chunkBarWidth = (width: number) => Math.max(10, width - 55);

const SHORT: Partial<Record<WorkerState, string>> = { registering: 'reg', training: 'train', sending: 'send', waiting: 'wait', receiving: 'recv', retrying: 'retry', failed: 'fail' };

export function ChunkTable({ m, maxRows }: { m: ScreenModel; maxRows: number }) {
  const barW = chunkBarWidth(m.width);
  // A window of rows around the selected chunk.
  const start = Math.max(0, Math.min(m.selected - 1 - Math.floor(maxRows / 2), m.chunks.length - maxRows));
  const rows = m.chunks.slice(start, start + maxRows);
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {'  '}
        {pad('chunk', 10)} {pad('host', 10)} {lpad('workers', 7)}{' '}
        {pad(m.chunks.length > maxRows ? `states ${start + 1}-${start + rows.length}/${m.chunks.length}` : 'states', barW)} {lpad('rounds', 6)} {lpad('errors', 6)}
      </Text>
      {rows.map((r) => {
        const sel = r.n === m.selected;
        const bad = r.status === 'lost' || r.status === 'missing' || r.status === 'failed';
        return (
          <Text key={r.n} wrap="truncate" inverse={sel && m.color}>
            {sel ? '> ' : '  '}
            {pad(r.label, 10)} {pad(r.host, 10)} {lpad(String(r.workers), 7)} <StateBar row={r} width={barW} color={m.color} /> {lpad(String(r.roundsDone), 6)}{' '}
            <Text color={m.color && r.errors > 0 ? 'red' : undefined}>{lpad(String(r.errors), 6)}</Text>
            {bad ? <Text color={m.color ? 'red' : undefined} bold>{` ${r.status.toUpperCase()}`}</Text> : null}
          </Text>
        );
      })}
      <Text wrap="truncate">
        {'  '}
        {LEGEND.map((s) => (
          <Text key={s}>
            <Text color={m.color ? STATE_STYLE[s].color : undefined}>{m.color ? '█' : STATE_STYLE[s].char}</Text> {m.width < 100 ? (SHORT[s] ?? s) : s}{' '}
          </Text>
        ))}
      </Text>
    </Box>
  );
}

function faultState(f: FaultRow): string {
  if (f.verdict) return f.verdict;
  if (f.leftMs !== null) return `on, ${(f.leftMs / 1000).toFixed(1)} s left`;
  return 'healed, judging';
}

/** "all workers of chunk 2" → "chunk 2": the TUI's columns are narrow. */
const shortTarget = (t: string) => t.replace(/^all workers of /, '').replace(/ workers? of /, ' of ');

export function FaultList({ m, maxRows }: { m: ScreenModel; maxRows: number }) {
  const rows = m.faults.slice(0, maxRows);
  const targetW = Math.max(16, m.width - 64);
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        faults{m.faults.length > rows.length ? ` (latest ${rows.length} of ${m.faults.length})` : ''}
        {m.faults.length === 0 ? <Text bold={false}> none yet{m.handFaults ? ' (keys d, b, l add one on the selected chunk)' : ''}</Text> : null}
      </Text>
      {rows.map((f) => {
        const st = faultState(f);
        const c = !m.color ? undefined : f.leftMs !== null && !f.verdict ? 'red' : st.startsWith('recovered') ? 'green' : st === 'healed, judging' ? 'yellow' : 'redBright';
        return (
          <Text key={f.id} wrap="truncate">
            {'  '}
            {pad(f.id, 20)} {pad(f.kind, 9)} {pad(shortTarget(f.target), targetW)} {pad(f.backend, 8)} <Text color={c}>{st}</Text>
          </Text>
        );
      })}
    </Box>
  );
}

export function NodeList({ m, maxRows }: { m: ScreenModel; maxRows: number }) {
  // Trouble first, so a lost node never scrolls out of sight.
  const bad = (n: NodeRow) => n.status === 'lost' || n.status === 'missing' || n.status === 'failed';
  const rows = [...m.nodes].sort((a, b) => Number(bad(b)) - Number(bad(a))).slice(0, maxRows);
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        nodes{m.nodes.length > rows.length ? ` (${rows.length} of ${m.nodes.length})` : ''}
      </Text>
      {rows.map((n) => (
        <Text key={n.id} wrap="truncate" color={m.color && bad(n) ? 'red' : undefined} bold={bad(n)}>
          {'  '}
          {pad(n.id, 14)} {pad(n.host, 8)} {pad(n.status, 8)} beat {lpad(fmtDuration(n.beatAgoMs), 5)} cpu {lpad(n.cpuPercent.toFixed(0), 3)}%{' '}
          {lpad((n.rssBytes / 1e6).toFixed(0), 4)} MB off {n.clockOffsetMs === null ? '–' : `${n.clockOffsetMs >= 0 ? '+' : ''}${n.clockOffsetMs.toFixed(1)}ms`}
          {m.width >= 100 ? ` lag ${n.loopDelayMs === null ? '–' : `${n.loopDelayMs.toFixed(0)}ms`} fds ${n.openFds ?? '–'}` : ''}
        </Text>
      ))}
    </Box>
  );
}

export function RoundsAndLog({ m, logRows }: { m: ScreenModel; logRows: number }) {
  const lines = m.log.slice(-logRows);
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">
        <Text bold>rounds</Text> {sparkline(m.roundMs, Math.max(10, m.width - 30)) || '(none closed yet)'}
        {m.roundMs.length ? `  max ${fmtMs(Math.max(...m.roundMs))}` : ''}
      </Text>
      {lines.map((l, i) => (
        <Text key={i} wrap="truncate" dimColor={m.color}>
          {'  '}
          {l}
        </Text>
      ))}
    </Box>
  );
}

export function Keys({ m }: { m: ScreenModel }) {
  const hand = m.handFaults ? 'd disconnect  b blackhole  l delay  h heal  ' : '';
  return (
    <Box flexDirection="column">
      <Text wrap="truncate" color={m.color ? 'yellow' : undefined}>
        {m.message}
      </Text>
      <Text wrap="truncate" inverse={m.color}>
        {` ↑↓ chunk  ${hand}p ${m.paused ? 'resume' : 'pause'}  ? help  q quit `}
      </Text>
    </Box>
  );
}

export function Help({ m }: { m: ScreenModel }) {
  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1}>
      <Text bold>keys</Text>
      <Text>↑ / ↓     select a chunk (the row marked &gt;)</Text>
      <Text>d         disconnect the selected chunk: its connections reset for {m.handFaults ? 'the hand fault duration' : '–'}</Text>
      <Text>b         black-hole it: packets go nowhere, connections hang</Text>
      <Text>l         add delay to its link</Text>
      <Text>h         heal every fault on the selected chunk now</Text>
      <Text>p         pause / resume new rounds (the open round is held)</Text>
      <Text>q, Ctrl-C quit: faults healed, nodes stopped, summary.json written</Text>
      <Text>?         this help (any key closes it)</Text>
      {!m.handFaults ? <Text color={m.color ? 'yellow' : undefined}>faults by hand are off for this run (handFaults: off)</Text> : null}
    </Box>
  );
}

/** Row budgets for a screen of `height` lines: chunks, faults, nodes and log share what the fixed lines leave. */
export function layout(m: ScreenModel): { chunks: number; faults: number; nodes: number; log: number } {
  const fixed = 2 + 2 + 1 + 1 + 1 + 2; // header, chunk title + legend, faults title, nodes title, sparkline, message + keys
  let rest = Math.max(4, m.height - fixed - 1);
  const chunks = Math.min(m.chunks.length, Math.max(2, Math.floor(rest * 0.4)));
  rest -= chunks;
  const faults = Math.min(m.faults.length, Math.max(1, Math.min(4, Math.floor(rest / 3))));
  rest -= faults;
  const nodes = Math.min(m.nodes.length, Math.max(1, rest - 2));
  rest -= nodes;
  return { chunks, faults, nodes, log: Math.max(0, rest) };
}

export function Screen({ m }: { m: ScreenModel }) {
  if (m.help) return <Help m={m} />;
  const l = layout(m);
  return (
    <Box flexDirection="column" width={m.width}>
      <Header m={m} />
      <ChunkTable m={m} maxRows={l.chunks} />
      <FaultList m={m} maxRows={l.faults} />
      <NodeList m={m} maxRows={l.nodes} />
      <RoundsAndLog m={m} logRows={l.log} />
      <Keys m={m} />
    </Box>
  );
}
