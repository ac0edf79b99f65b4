// Build the prebuilt labextension into ../dspyopt_nb/labextension with @jupyterlab/builder, against the shared
// packages of the JupyterLab installed in the Python environment ($PYTHON, else python3 on PATH).
// (`jupyter labextension build` now delegates to jupyter-builder, which looks up versions on GitHub: not here.)
const { execFileSync } = require('child_process');
const path = require('path');
const python = process.env.PYTHON || 'python3';
let core;
try {
  core = execFileSync(python, ['-c', 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))']).toString().trim();
} catch (err) {
  console.error(`cannot find JupyterLab with ${python}: ${err}. Fix: PYTHON=/path/to/venv/bin/python jlpm build:labextension (JupyterLab 4 installed there).`);
  process.exit(1);
}
const args = [require.resolve('@jupyterlab/builder/lib/build-labextension.js'), '--core-path', core, ...process.argv.slice(2), path.resolve(__dirname, '..')];
execFileSync(process.execPath, args, { stdio: 'inherit' });
