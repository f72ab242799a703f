// Reading one record (a run, a deployment) again and again until it is final: every `pollMs`
// while it is not, every `retryMs` after a failed read (never after a 404: it will not appear).
// Starting on another record, or stopping, drops whatever read is still in flight, so a late
// answer for the record shown before never lands on the page shown now.

/**
 * @param {{read: (id: string) => Promise<any>, isFinal: (record: any) => boolean,
 *          onRecord: (record: any) => void, onError: (error: any) => void,
 *          pollMs: number, retryMs: number}} options
 */
export function createFollower({ read, isFinal, onRecord, onError, pollMs, retryMs }) {
  let timer = null;
  let token = 0;

  async function poll(id, mine) {
    let record;
    try {
      record = await read(id);
    } catch (error) {
      if (mine !== token) return;
      onError(error);
      if (error.status !== 404) timer = setTimeout(() => poll(id, mine), retryMs);
      return;
    }
    if (mine !== token) return;
    onRecord(record);
    if (!isFinal(record)) timer = setTimeout(() => poll(id, mine), pollMs);
  }

  function stop() {
    token++;
    clearTimeout(timer);
  }

  return {
    start(id) {
      stop();
      poll(id, token);
    },
    stop,
  };
}
