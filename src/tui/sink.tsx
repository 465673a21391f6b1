import { type Instance, type Key, render, useInput } from 'ink';
import type { RunStore } from '../sim/runStore.js';
import { Screen } from './components.js';
import { RateMeter, type RunMeta, type ScreenModel, type UiState, screenModel } from './model.js';

export interface TuiActions {
  fireHand(chunk: number, kind: 'reset' | 'blackhole' | 'delay'): string;
  healChunk(chunk: number): string;
  setPaused(paused: boolean): string;
  quit(): void;
}

export interface TuiOptions {
  stdout?: NodeJS.WriteStream;
  stdin?: NodeJS.ReadStream;
  /** Colours unless NO_COLOR is set (https://no-color.org). */
  color?: boolean;
  /** At most this many renders per second (the store changes far more often). */
  fps?: number;
}

function App({ m, onKey }: { m: ScreenModel; onKey: (input: string, key: Key) => void }) {
  useInput(onKey);
  return <Screen m={m} />;
}

/** Which key does what; pure, so the keys are tested without a terminal. */
export function handleKey(input: string, key: Pick<Key, 'upArrow' | 'downArrow' | 'ctrl' | 'escape'>, ui: UiState, chunks: number, paused: boolean, a: TuiActions): void {
  if (ui.help) {
    ui.help = false;
    return;
  }
  if (key.upArrow || input === 'k') ui.selected = Math.max(1, ui.selected - 1);
  else if (key.downArrow || input === 'j') ui.selected = Math.min(chunks, ui.selected + 1);
  else if (input === 'd') ui.message = a.fireHand(ui.selected, 'reset');
  else if (input === 'b') ui.message = a.fireHand(ui.selected, 'blackhole');
  else if (input === 'l') ui.message = a.fireHand(ui.selected, 'delay');
  else if (input === 'h') ui.message = a.healChunk(ui.selected);
  else if (input === 'p') ui.message = a.setPaused(!paused);
  else if (input === '?') ui.help = true;
  else if (input === 'q' || (key.ctrl && input === 'c')) {
    ui.message = 'quitting: healing faults, stopping nodes, writing summary.json …';
    a.quit();
  }
}

/**
 * The terminal UI: the one adapter that subscribes to the coordinator's store. Store
 * events only mark the screen dirty; a timer renders at most `fps` times a second, and the
 * model is built per chunk and node, never per worker, so 10,000 workers cost what 10 do.
 */
export class TuiSink {
  private readonly ui: UiState;
  private readonly rates = new RateMeter();
  private readonly unsubscribe: () => void;
  private readonly timer: NodeJS.Timeout;
  private readonly ink: Instance;
  private readonly stdout: NodeJS.WriteStream;
  private dirty = true;
  private lastRender = 0;
  private closed = false;

  constructor(
    private readonly store: RunStore,
    private readonly meta: RunMeta,
    private readonly actions: TuiActions,
    o: TuiOptions = {},
  ) {
    this.stdout = o.stdout ?? process.stdout;
    this.ui = { selected: 1, help: false, message: '', width: this.stdout.columns || 80, height: this.stdout.rows || 24, color: o.color ?? !('NO_COLOR' in process.env && process.env.NO_COLOR !== '') };
    this.unsubscribe = store.subscribe(() => (this.dirty = true));
    this.ink = render(this.element(), { stdout: this.stdout, stdin: o.stdin ?? process.stdin, exitOnCtrlC: false, patchConsole: false });
    this.stdout.on('resize', this.onResize);
    const every = 1000 / (o.fps ?? 10);
    this.timer = setInterval(() => {
      // Time moves (elapsed, time left) even when the store does not: once a second at least.
      if (this.dirty || performance.now() - this.lastRender >= 1000) this.render();
    }, every);
  }

  private readonly onResize = () => {
    this.ui.width = this.stdout.columns || 80;
    this.ui.height = this.stdout.rows || 24;
    this.ink.clear();
    this.render();
  };

  private element() {
    const m = screenModel(this.store, this.meta, this.ui, this.rates, performance.now());
    return <App m={m} onKey={(input, key) => this.key(input, key)} />;
  }

  private key(input: string, key: Key): void {
    handleKey(input, key, this.ui, this.meta.nodes, this.store.paused, this.actions);
    this.render();
  }

  private render(): void {
    if (this.closed) return;
    this.dirty = false;
    this.lastRender = performance.now();
    this.ink.rerender(this.element());
  }

  /** Draws the last frame and gives the terminal back. */
  close(): void {
    if (this.closed) return;
    this.render();
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe();
    this.stdout.off('resize', this.onResize);
    this.ink.unmount();
  }
}
