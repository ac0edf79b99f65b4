// Client-side search of the docs site: search.json holds one entry per page section (title, heading, text).
(function () {
  const root = window.SITE_ROOT || '';
  let index = null;
  const input = document.getElementById('search'), box = document.getElementById('search-results');
  if (!input || !box) return;
  const load = () => index ? Promise.resolve(index) : fetch(root + 'search.json').then(r => r.json()).then(d => (index = d));
  const esc = s => s.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
  function score(e, words) {
    let s = 0;
    const t = e.title.toLowerCase(), h = e.heading.toLowerCase(), x = e.text.toLowerCase();
    for (const w of words) {
      const inT = t.includes(w), inH = h.includes(w), inX = x.includes(w);
      if (!inT && !inH && !inX) return 0;
      s += (inT ? 5 : 0) + (inH ? 3 : 0) + (inX ? 1 + Math.min(4, x.split(w).length - 1) / 4 : 0);
    }
    return s;
  }
  function snippet(text, w) {
    const i = text.toLowerCase().indexOf(w);
    const s = text.slice(Math.max(0, i - 60), i + 120);
    return (i > 60 ? '…' : '') + esc(s).replace(new RegExp(w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'ig'), m => `<mark>${m}</mark>`) + '…';
  }
  function show(q) {
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) { box.classList.remove('open'); return; }
    load().then(idx => {
      const hits = idx.map(e => [score(e, words), e]).filter(([s]) => s > 0).sort((a, b) => b[0] - a[0]).slice(0, 12);
      box.innerHTML = hits.length ? hits.map(([, e]) => `<a href="${root}${e.url}"><div class="r-title">${esc(e.title)}${e.heading ? ' › ' + esc(e.heading) : ''}</div><div class="r-snip">${snippet(e.text, words[0])}</div></a>`).join('')
        : `<div class="r-none">No page mentions “${esc(q)}”.</div>`;
      box.classList.add('open');
    });
  }
  input.addEventListener('input', () => show(input.value));
  input.addEventListener('focus', () => { load(); if (input.value) show(input.value); });
  input.addEventListener('keydown', ev => {
    if (ev.key === 'Enter') { const a = box.querySelector('a'); if (a) window.location.href = a.href; }
    if (ev.key === 'Escape') { box.classList.remove('open'); input.blur(); }
  });
  document.addEventListener('click', ev => { if (!box.contains(ev.target) && ev.target !== input) box.classList.remove('open'); });
})();
