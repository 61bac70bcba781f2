/** Tiny DOM helpers: the panels are plain DOM (no framework), rebuilt from JSON on each load. */

type Attrs = Record<string, string | number | boolean | undefined | null>;
type Child = Node | string | null | undefined | false;

export function h(
  tag: string,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) {
      continue;
    }
    if (k === 'class') {
      el.className = String(v);
    } else if (k === 'text') {
      el.textContent = String(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) {
      continue;
    }
    el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

export function button(
  label: string,
  onClick: () => void,
  attrs: Attrs = {}
): HTMLButtonElement {
  const b = h('button', { class: 'jp-llmops-button', ...attrs }, label);
  b.addEventListener('click', e => {
    e.stopPropagation();
    onClick();
  });
  return b as HTMLButtonElement;
}

export function select(
  options: [string, string][],
  value: string,
  onChange: (v: string) => void,
  attrs: Attrs = {}
): HTMLSelectElement {
  const s = h('select', { class: 'jp-llmops-select', ...attrs }) as HTMLSelectElement;
  for (const [v, label] of options) {
    const o = h('option', { value: v }, label) as HTMLOptionElement;
    o.selected = v === value;
    s.appendChild(o);
  }
  s.addEventListener('change', () => onChange(s.value));
  return s;
}

export function shortTime(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const d = new Date(iso);
  return isNaN(d.getTime())
    ? iso
    : d.toLocaleString(undefined, {
        month: 'short',
        day: 'numeric',
        hour: '2-digit',
        minute: '2-digit'
      });
}
