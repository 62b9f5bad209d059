"""The labeling configs (XML) clinlinker ships for Label Studio; a package only so that an installed clinlinker
(`clinlinker ls-project`) finds them too."""
