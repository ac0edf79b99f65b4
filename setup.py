# nbdev 2 style setup.py: every setting comes from settings.ini.
from configparser import ConfigParser
import os, setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
lic = licenses[cfg['license']]

def reqs(key): return shlex.split(cfg.get(key, ''))

def tree(src, dest, skip=("install.json",)):
    "(folder, files) pairs installing every file under `src` (but `skip`) below `dest` in the environment's prefix."
    out = []
    for d, _, files in os.walk(src):
        keep = [os.path.join(d, f) for f in sorted(files) if f not in skip]
        if keep: out.append((os.path.normpath(os.path.join(dest, os.path.relpath(d, src))), keep))
    return out

# The JupyterLab extension ships prebuilt (make builds extension/ into dspyopt_nb/labextension) and is enabled by
# installing the package: the labextension goes to share/jupyter/labextensions/dspyopt and a jupyter_server_config.d
# file enables the server extension (dspyopt_nb.notebook.server). An editable install (pip install -e) skips
# data_files: there the Makefile links the same two into the virtualenv.
LABEXT = os.path.join(cfg['lib_name'], 'labextension')
if not os.path.exists(os.path.join(LABEXT, 'package.json')):
    print(f"warning: {LABEXT} is not built: the package will lack the JupyterLab panel. Fix: make labextension (needs Node.js).")
data_files = tree(LABEXT, 'share/jupyter/labextensions/dspyopt') + [
    ('share/jupyter/labextensions/dspyopt', ['extension/install.json']),
    ('etc/jupyter/jupyter_server_config.d', ['jupyter-config/jupyter_server_config.d/dspyopt_nb.json'])]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    license=lic[0], author=cfg['author'], author_email=cfg['author_email'],
    classifiers=['Development Status :: ' + cfg['status'] + ' - ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(), 'License :: ' + lic[1],
                 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: 3.11'],
    url=cfg['git_url'], packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True, data_files=data_files, package_data={cfg['lib_name']: ['data/*', 'data/*/*', 'data/*/*/*', 'store/migrations/*', 'store/migrations/versions/*']},
    install_requires=reqs('requirements'),
    # torch is an extra: an unpinned torch would pull a multi-GB CUDA build
    extras_require={'dev': reqs('dev_requirements'), 'torch': reqs('torch_requirements')},
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  # the built-in optimizers register as any plugin does (dspyopt_nb.optimizers.protocol)
                  'dspyopt.optimizers': cfg.get('optimizer_entry_points', '').split(),
                  'nbdev': [f"{cfg.get('lib_path')}={cfg.get('lib_path')}._modidx:d"]},
)
