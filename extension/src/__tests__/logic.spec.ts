import {
  Backoff,
  defaultGridState,
  diffLineClass,
  gridQuery,
  pageCount,
  parseMetricFilter,
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
  it('sends only what differs from the defaults', () => {
    const q = new URLSearchParams(gridQuery('.llmops', defaultGridState()));
    expect(q.get('ws')).toBe('.llmops');
    expect(q.get('filters')).toBeNull();
    expect(q.get('sort')).toBeNull();
  });
  it('encodes filters, sort and baseline', () => {
    const s = {
      ...defaultGridState(),
      page: 2,
      search: ' aspirin ',
      errorsOnly: true,
      metricFilters: [{ metric: 'token_f1', op: '<', value: 0.5 }],
      sortMetric: 'token_f1',
      sortVariant: 'a/b',
      descending: false,
      baseline: 'x'
    };
    const q = new URLSearchParams(gridQuery('p/.llmops', s));
    expect(q.get('page')).toBe('2');
    expect(JSON.parse(q.get('filters') as string)).toEqual({
      search: 'aspirin',
      errors_only: true,
      metrics: [{ metric: 'token_f1', op: '<', value: 0.5 }]
    });
    expect(q.get('sort')).toBe('token_f1:a/b:asc');
    expect(q.get('baseline')).toBe('x');
  });
});

describe('small helpers', () => {
  it('parses score filters and rejects junk', () => {
    expect(parseMetricFilter('token_f1 <= 0.25')).toEqual({
      metric: 'token_f1',
      op: '<=',
      value: 0.25
    });
    expect(parseMetricFilter('rouge_l@rag/mini < 1')).toEqual({
      metric: 'rouge_l',
      op: '<',
      value: 1,
      variant: 'rag/mini'
    });
    expect(parseMetricFilter('token_f1 is low')).toBeNull();
  });
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
