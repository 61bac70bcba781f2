import {
  Backoff,
  diffLineClass,
  formatGridScore,
  formatMs,
  gridQuery,
  nextState,
  pageCount,
  rowsLabel,
  scoreDelta,
  snippets
} from '../logic';

describe('Backoff', () => {
  it('doubles while quiet, resets on change or a running run, caps at max', () => {
    const b = new Backoff(1000, 8000);
    expect(b.next(false, false)).toBe(2000);
    expect(b.next(false, false)).toBe(4000);
    expect(b.next(false, false)).toBe(8000);
    expect(b.next(false, false)).toBe(8000);
    expect(b.next(true, false)).toBe(1000);
    b.next(false, false);
    expect(b.next(false, true)).toBe(1000);
    expect(b.next(false, false, true)).toBe(8000);
    expect(b.failed()).toBe(4000);
    expect(b.failed()).toBe(8000);
  });
});

describe('gridQuery', () => {
  it('sends the notebook grid view state as JSON', () => {
    const q = new URLSearchParams(
      gridQuery('p/.llmops', {
        show: 'failures',
        failure_metric: 'token_f1',
        failure_threshold: 0.5,
        search: 'aspirin|statin',
        search_regex: true,
        sort_by: 'delta',
        sort_metric: 'token_f1',
        baseline: 'a/b',
        page: 2
      })
    );
    expect(q.get('ws')).toBe('p/.llmops');
    expect(JSON.parse(q.get('view') as string)).toEqual({
      show: 'failures',
      failure_metric: 'token_f1',
      failure_threshold: 0.5,
      search: 'aspirin|statin',
      search_regex: true,
      sort_by: 'delta',
      sort_metric: 'token_f1',
      baseline: 'a/b',
      page: 2
    });
    expect(q.toString().split('&').map(kv => kv.split('=')[0])).toEqual(['ws', 'view']);
  });
});

describe('nextState', () => {
  it('goes back to the first page when the rows change, keeps it when only their look changes', () => {
    const s = { page: 3, page_size: 25, show: 'all' };
    expect(nextState(s, { show: 'errors' })).toEqual({ page: 0, page_size: 25, show: 'errors' });
    expect(nextState(s, { search: 'x' }).page).toBe(0);
    expect(nextState(s, { page_size: 50 }).page).toBe(0);
    expect(nextState(s, { baseline: 'v1' }).page).toBe(3);
    expect(nextState(s, { diff: 'baseline', baseline: 'v1' }).page).toBe(3);
    expect(nextState(s, { page: 4 }).page).toBe(4);
  });
});

describe('grid formatting', () => {
  it('rounds scores like the notebook grid and signs deltas by direction', () => {
    expect(formatGridScore(0.123456)).toBe('0.12');
    expect(formatGridScore(12.345)).toBe('12.3');
    expect(formatGridScore(1234.5)).toBe('1,235');
    expect(formatGridScore(null)).toBe('–');
    expect(scoreDelta(0.5, 0.25)).toEqual({ text: '+0.25', trend: 'up' });
    expect(scoreDelta(0.25, 0.5)).toEqual({ text: '−0.25', trend: 'down' });
    expect(scoreDelta(120, 100, false)).toEqual({ text: '+20.0', trend: 'down' });
    expect(scoreDelta(0.3, 0.3)).toEqual({ text: '±0', trend: 'same' });
    expect(scoreDelta(null, 0.3)).toBeNull();
  });
  it('formats latency and row ranges', () => {
    expect(formatMs(0.2)).toBe('<1 ms');
    expect(formatMs(12.6)).toBe('13 ms');
    expect(formatMs(2500)).toBe('2.5 s');
    expect(formatMs(null)).toBeNull();
    expect(rowsLabel(0, 25, 40, 40)).toBe('rows 1–25 of 40 cases');
    expect(rowsLabel(1, 10, 12, 40)).toBe('rows 11–12 of 12 (filtered from 40 cases)');
    expect(rowsLabel(0, 10, 0, 40)).toBe('rows 0–0 of 0 (filtered from 40 cases)');
  });
});

describe('small helpers', () => {
  it('counts pages and classifies diff lines', () => {
    expect(pageCount(0, 25)).toBe(1);
    expect(pageCount(51, 25)).toBe(3);
    expect(diffLineClass('+++ b')).toBe('jp-llmops-diff-file');
    expect(diffLineClass('+new')).toBe('jp-llmops-diff-add');
    expect(diffLineClass('-old')).toBe('jp-llmops-diff-del');
    expect(diffLineClass('@@ -1 +1 @@')).toBe('jp-llmops-diff-hunk');
  });
  it('puts the workspace and run into snippets', () => {
    const s = snippets('proj/.llmops', 'r123');
    expect(s['leaderboard of the run']).toBe(
      '%llmops leaderboard r123 --workspace proj/.llmops'
    );
    expect(snippets('.llmops', null)['list runs']).toBe('%llmops runs');
  });
});
