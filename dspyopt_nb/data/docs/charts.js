// Interactive charts: every Vega-Lite output of the page (and those inside saved widgets) drawn with vega-embed.
(function () {
  const specs = {};
  for (const s of document.querySelectorAll('script.vega-spec')) specs[s.dataset.target] = JSON.parse(s.textContent);
  function draw(el, spec) { if (el.dataset.drawn) return; el.dataset.drawn = '1'; vegaEmbed(el, spec, { actions: { export: true, source: false, compiled: false, editor: false } }).catch(e => { el.textContent = 'chart: ' + e; }); }
  function scan() {
    for (const el of document.querySelectorAll('.vega-chart')) {
      const key = el.id || Array.from(el.classList).find(c => c.startsWith('vega-w-'));
      if (key && specs[key]) draw(el, specs[key]);
    }
  }
  scan();
  new MutationObserver(scan).observe(document.body, { childList: true, subtree: true });  // widgets render after load
})();
