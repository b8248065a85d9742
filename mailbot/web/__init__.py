"""The staff page: every dossier at a glance, its timeline, and the steps a person confirms."""

import warnings

from authlib.deprecate import AuthlibDeprecationWarning

# Without httpx2 installed, authlib says at import, on every start of the page, that it falls back
# to httpx (which works): two lines of noise before `mailbot web`'s own. Set after authlib's own
# "always" filter (made when authlib.deprecate is imported), so that this one comes first.
warnings.filterwarnings("ignore", "The httpx module is deprecated", AuthlibDeprecationWarning)
