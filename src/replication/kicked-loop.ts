/**
 * A processing loop run one at a time, and again whenever kicked while it runs: frames arrive in
 * bursts within one tick, so a loop that found its epoch incomplete must look again at the END that
 * came right after. A kick that lands after the loop's last look, before its run is over, starts a
 * new run (unless `stopped`).
 */
export class KickedLoop {
  private run: Promise<void> | undefined;
  private pending = false;

  constructor(
    private readonly loop: () => Promise<void>,
    private readonly stopped: () => boolean = () => false,
  ) {}

  /** The run in progress, if any. */
  get current(): Promise<void> | undefined {
    return this.run;
  }

  /** Run the loop, or make the running one look again. */
  kick(): void {
    this.pending = true;
    if (this.run) return;
    this.run = (async () => {
      while (this.pending) {
        this.pending = false;
        await this.loop();
      }
    })().finally(() => {
      this.run = undefined;
      if (this.pending && !this.stopped()) this.kick();
    });
  }
}
