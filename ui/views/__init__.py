"""The page files st.navigation runs (a package only so that installs ship them)."""
